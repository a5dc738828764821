"""`polymodal fit` against scikit-learn baselines on real tables that ship in packages.

Tables (built here, nothing downloaded):
- emoji: 650 emoji (seeded, stratified sample of polymodal's packaged Noto emoji) with picture, English name and
  keywords; target: the Unicode group (10 classes); split: the dataset's own column.
- cars: the 406 cars of vega_datasets' bundled `cars.json` (name, 6 numbers, origin); target: the model year
  (1970-1982, 12 classes); split: seeded stratified 70/15/15 (`--split-seed`, default 0). (Origin as the
  target is solved by the make in the name alone: every model, scikit-learn's and fit's, scores 1.0 on it.)
- cars_mpg: the same cars (the 398 with a miles-per-gallon figure) and split; target: miles per gallon, a
  number (regression: RMSE and R2; baselines: ridge instead of logistic regression, regression trees).
Baselines (scikit-learn, hyperparameters chosen on validation, scored on test): TF-IDF (word 1-2 grams) +
logistic regression on the text (the text columns joined); gradient-boosted trees on the numbers; logistic
regression on image statistics (colour histogram, per-channel mean/std, an 8x8 grey thumbnail); all of them
stacked.

    OMP_NUM_THREADS=1 PYTHONPATH=src nice python benchmarks/fit_real.py --out /tmp/fit_real
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import sparse
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler


def emoji_table(root: Path, n: int = 650) -> Path:
    from polymodal.datasets.emoji import materialize_emoji

    src = materialize_emoji()
    frame = pd.read_csv(src / "records.csv")
    sample, _ = train_test_split(frame, train_size=n, stratify=frame["group"], random_state=0)
    (root / "images").mkdir(parents=True, exist_ok=True)  # the pictures beside the table (paths stay inside it)
    for p in sample["image"]:
        shutil.copyfile(src / p, root / "images" / Path(p).name)
    sample = sample.assign(image=[f"images/{Path(p).name}" for p in sample["image"]])
    sample[["id", "image", "name", "keywords", "group", "split"]].to_csv(root / "emoji.csv", index=False)
    return root / "emoji.csv"


def cars_table(root: Path, seed: int = 0) -> Path:
    from vega_datasets import local_data

    frame = local_data.cars().rename(columns=str.lower)
    frame["year"] = pd.to_datetime(frame["year"]).dt.year
    frame.insert(0, "id", [f"car{i:03d}" for i in range(len(frame))])
    train, rest = train_test_split(frame.index, train_size=0.7, stratify=frame["year"], random_state=seed)
    val, test = train_test_split(rest, train_size=0.5, stratify=frame.loc[rest, "year"], random_state=seed)
    frame["split"] = "train"
    frame.loc[val, "split"], frame.loc[test, "split"] = "val", "test"
    root.mkdir(parents=True, exist_ok=True)
    frame.to_csv(root / "cars.csv", index=False)
    return root / "cars.csv"


def image_stats(paths: pd.Series, root: Path) -> np.ndarray:
    rows = []
    for p in paths:
        with Image.open(root / p) as img:
            rgb = np.asarray(img.convert("RGB").resize((32, 32)), dtype=np.float32) / 255
        hist = np.histogramdd(rgb.reshape(-1, 3), bins=(4, 4, 4), range=[(0, 1)] * 3)[0].ravel() / 1024
        grey = np.asarray(Image.fromarray((rgb * 255).astype(np.uint8)).convert("L").resize((8, 8))).ravel() / 255
        rows.append(np.concatenate([hist, rgb.mean((0, 1)), rgb.std((0, 1)), grey]))
    return np.stack(rows)


def pick(make, grid, x: dict, y: dict):  # type: ignore[no-untyped-def]
    """Fit one model per setting on train, keep the best on validation (accuracy + macro-F1; numbers: RMSE)."""
    def score(m):  # type: ignore[no-untyped-def]
        p = m.predict(x["val"])
        if y["val"].dtype.kind == "f":
            return -mean_squared_error(y["val"], p) ** 0.5
        return accuracy_score(y["val"], p) + f1_score(y["val"], p, average="macro")
    return max((make(g).fit(x["train"], y["train"]) for g in grid), key=score)


def baselines(frame: pd.DataFrame, target: str, text: list[str], numbers: list[str],
              image: str | None, root: Path) -> dict[str, tuple[float, float]]:
    parts = {s: frame[frame["split"] == s] for s in ("train", "val", "test")}
    regression = frame[target].dtype.kind == "f"
    y = {s: (p[target].to_numpy(float) if regression else p[target].astype(str).to_numpy())
         for s, p in parts.items()}
    blocks: dict[str, dict[str, object]] = {}
    if text:
        joined = {s: p[text].fillna("").astype(str).agg(" ".join, axis=1) for s, p in parts.items()}
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1).fit(joined["train"])
        blocks["text"] = {s: vec.transform(t) for s, t in joined.items()}
    if numbers:
        blocks["numbers"] = {s: p[numbers].to_numpy(dtype=float) for s, p in parts.items()}
    if image:
        stats = {s: image_stats(p[image], root) for s, p in parts.items()}
        scaler = StandardScaler().fit(stats["train"])
        blocks["image statistics"] = {s: scaler.transform(v) for s, v in stats.items()}
    logreg = lambda g: LogisticRegression(C=g[0], class_weight=g[1], max_iter=3000)  # noqa: E731
    lr_grid = [(c, w) for c in (0.1, 1.0, 10.0, 100.0) for w in (None, "balanced")]
    trees = HistGradientBoostingClassifier
    if regression:  # ridge and regression trees
        logreg, lr_grid, trees = lambda g: Ridge(alpha=g), [0.01, 0.1, 1.0, 10.0, 100.0], HistGradientBoostingRegressor
    out = {}
    for name, x in blocks.items():
        if name == "numbers":
            model = pick(lambda g: trees(max_leaf_nodes=g, random_state=0), [7, 15, 31], x, y)
        else:
            model = pick(logreg, lr_grid, x, y)
        out[name] = _test(model, x, y)
    if len(blocks) > 1:
        dense = lambda v: sparse.csr_matrix(np.nan_to_num(v)) if not sparse.issparse(v) else v  # noqa: E731
        if "numbers" in blocks:
            scaler = StandardScaler().fit(np.nan_to_num(blocks["numbers"]["train"]))
            blocks["numbers"] = {s: scaler.transform(np.nan_to_num(v)) for s, v in blocks["numbers"].items()}
        stacked = {s: sparse.hstack([dense(b[s]) for b in blocks.values()]).tocsr() for s in y}
        out["all together"] = _test(pick(logreg, lr_grid, stacked, y), stacked, y)
    return out


def _test(model, x: dict, y: dict) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Accuracy and macro-F1 (numbers: RMSE and R2) on test."""
    p = model.predict(x["test"])
    if y["test"].dtype.kind == "f":
        return mean_squared_error(y["test"], p) ** 0.5, r2_score(y["test"], p)
    return accuracy_score(y["test"], p), f1_score(y["test"], p, average="macro")


def run_fit(path: Path, target: str, out: Path) -> tuple[dict[str, float], float, pd.DataFrame]:
    from polymodal.apps.fit import fit_table

    start = time.perf_counter()
    predictor = fit_table(path, target, split_column="split", out=out, ignore=["split"])
    seconds = time.perf_counter() - start
    frame = pd.read_csv(path)
    test = frame[frame["split"] == "test"]
    return predictor.evaluate(test, root=path.parent), seconds, pd.read_csv(out / "leaderboard.csv")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("/tmp/fit_real"))
    parser.add_argument("--tables", default="cars,emoji")
    parser.add_argument("--split-seed", type=int, default=0, help="the cars tables' split (emoji has its own)")
    args = parser.parse_args()
    numbers = ["miles_per_gallon", "cylinders", "displacement", "horsepower", "weight_in_lbs", "acceleration"]
    specs = {"emoji": (emoji_table, "group", ["name", "keywords"], [], "image"),
             "cars": (cars_table, "year", ["name", "origin"], numbers, None),
             "cars_mpg": (cars_table, "miles_per_gallon", ["name", "origin"],
                          [n for n in numbers if n != "miles_per_gallon"] + ["year"], None)}
    lines = []
    for name in args.tables.split(","):
        make, target, text, numbers, image = specs[name]
        path = make(args.out / "data", args.split_seed) if make is cars_table else make(args.out / "data")
        frame = pd.read_csv(path)
        if frame[target].isna().any():  # a regression target: records without it are left out
            frame = frame.dropna(subset=[target])
            frame.to_csv(path := path.with_name(f"{name}.csv"), index=False)
        regression = frame[target].dtype.kind == "f"
        main = ("rmse", "r2") if regression else ("accuracy", "macro_f1")
        load = os.getloadavg()
        t0 = time.perf_counter()
        base = baselines(frame, target, text, numbers, image, path.parent)
        base_s = time.perf_counter() - t0
        metrics, fit_s, board = run_fit(path, target, args.out / f"fit_{name}")
        load_after = os.getloadavg()
        kind = "a number" if regression else f"{frame[target].nunique()} classes"
        lines.append(f"\n## {name}: {len(frame)} records, target {target} "
                     f"({kind}), test {int((frame['split'] == 'test').sum())}\n")
        lines.append(f"| model (test split) | {' | '.join(main)} |\n|---|---|---|")
        for b, (m1, m2) in base.items():
            lines.append(f"| scikit-learn: {b} | {m1:.3f} | {m2:.3f} |")
        lines.append(f"| **polymodal fit (chosen model)** | **{metrics[main[0]]:.3f}** | "
                     f"**{metrics[main[1]]:.3f}** |")
        lines.append(f"\nfit: {fit_s:.0f} s; scikit-learn baselines: {base_s:.1f} s (ratio {fit_s / base_s:.0f}x); "
                     f"load average before {load[0]:.1f}, after {load_after[0]:.1f} (2 cores, shared)\n")
        cols = ["model", "modalities", *(f"{s}_{k}" for s in ("val", "test") for k in main), "seconds",
                "ensemble_weight"]
        lines.append("leaderboard:\n\n```\n" + board[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}")
                     + "\n```")
        print("\n".join(lines[-8:]), flush=True)
    text = "\n".join(lines)
    (args.out / "fit_real.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
