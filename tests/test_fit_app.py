"""`polymodal fit` end to end on a small table with an image, a text and numbers (preset fast)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from polymodal.apps.infer import column_kind, infer_task, leakage
from polymodal.apps.selection import greedy_ensemble
from polymodal.cli import main
from polymodal.predictor import Predictor

COLORS = {"a": (220, 30, 30), "b": (30, 200, 30), "c": (30, 30, 220), "d": (200, 200, 30)}
WORDS = {"a": "red apple cherry", "b": "green leaf grass", "c": "blue sea sky", "d": "yellow sun lemon"}


def make_table(root: Path, n: int = 60) -> Path:
    """Classes a/b/c in every split, class d only in test; every image is a coloured disc on a transparent
    background (RGBA), saved as PNG."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(n):
        label = "abc"[i % 3] if i < n - 3 else "d"
        split = "test" if i >= n - 3 else ("train" if i % 5 < 3 else "val" if i % 5 == 3 else "test")
        img = Image.new("RGBA", (24, 16), (0, 0, 0, 0))
        for x in range(24):
            for y in range(16):
                if (x - 12) ** 2 + (y - 8) ** 2 < 30:
                    img.putpixel((x, y), (*COLORS[label], 255))
        img.save(root / "img" / f"{i}.png")
        rows.append({"record": f"r{i:03d}", "photo": f"img/{i}.png",
                     "caption": f"{WORDS[label]} {rng.choice(['one', 'two', 'three'])} item",
                     "size": float(rng.normal(len(label) + "abcd".index(label), 1.0)),
                     "weight": float(rng.normal(0, 1)), "label": label, "split": split})
    pd.DataFrame(rows).to_csv(root / "table.csv", index=False)
    return root / "table.csv"


def test_column_kinds(tmp_path: Path) -> None:
    path = make_table(tmp_path, n=30)
    frame = pd.read_csv(path)
    kinds = {c: column_kind(c, frame[c], tmp_path) for c in ("record", "photo", "caption", "size")}
    assert kinds == {"record": "id", "photo": "image", "caption": "text", "size": "numeric"}
    assert infer_task(frame["label"]) == "multiclass"


def test_leakage_names_the_column() -> None:
    frame = pd.DataFrame({"y": ["a", "b"] * 20, "copy": ["x", "z"] * 20, "noise": list(range(40))})
    assert list(leakage(frame, "y", ["copy", "noise"])) == ["copy"]


def test_greedy_ensemble_never_below_best_single() -> None:
    target = torch.tensor([0, 1, 1, 0])
    probs = {"good": torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]]),
             "other": torch.tensor([[0.2, 0.8], [0.1, 0.9], [0.1, 0.9], [0.9, 0.1]])}

    def acc(p: torch.Tensor) -> float:
        return float((p.argmax(1) == target).float().mean())

    weights, value = greedy_ensemble(probs, acc)
    assert value >= max(acc(p) for p in probs.values())
    assert abs(sum(weights.values()) - 1) < 1e-6


@pytest.mark.slow
def test_fit_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = make_table(tmp_path / "data")
    out = tmp_path / "fit"
    code = main(["fit", str(path), "--target", "label", "--split-column", "split", "--preset", "fast",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "class never seen in training" in printed and "(d)" in printed
    board = pd.read_csv(out / "leaderboard.csv")
    assert {"text_tfidf_logreg", "tabular_trees", "fusion_concat", "ensemble"} <= set(board["model"])
    assert {"val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1", "seconds"} <= set(board.columns)
    chosen = board[board["ensemble_weight"] > 0]
    assert board["val_accuracy"].max() == pytest.approx(chosen["val_accuracy"].max())
    predictor = Predictor.load(out / "best")
    frame = pd.read_csv(path)
    test = frame[(frame["split"] == "test") & (frame["label"] != "d")]
    predictions = predictor.predict(test, root=path.parent)
    assert (predictions == test["label"].to_numpy()).mean() >= 0.9
    assert (out / "config.yaml").is_file()
    assert main(["predict", str(out / "best"), "--data", str(path), "--out", str(tmp_path / "p.csv")]) == 0
    written = pd.read_csv(tmp_path / "p.csv")
    assert written["record"].tolist() == frame["record"].tolist()


def test_fit_dataframe_with_time_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from polymodal.apps.fit import fit_table

    path = make_table(tmp_path / "data", n=45)
    monkeypatch.chdir(tmp_path / "data")  # a DataFrame's relative paths start at the working directory
    frame = pd.read_csv(path)
    predictor = fit_table(frame, target="label", split_column="split", preset="fast", time_limit=0.0,
                          out=tmp_path / "fit")
    assert "time limit" in capsys.readouterr().out
    board = pd.read_csv(tmp_path / "fit" / "leaderboard.csv")
    assert board["model"].tolist() == ["text_tfidf_logreg", "ensemble"]
    assert (tmp_path / "fit" / "best" / "ensemble.json").is_file()
    known = frame[frame["label"] != "d"]
    assert (predictor.predict(known) == known["label"].to_numpy()).mean() > 0.9


def test_resolved_config_names_every_encoder(tmp_path: Path) -> None:
    import yaml

    from polymodal.config import parse_config
    from polymodal.data.dataset import build_pipeline
    from polymodal.rundir import save_pipeline

    config = parse_config({"data": {"source": "t.csv"}, "target": {"field": "y", "task": "multiclass"},
                           "modalities": {"photo": {"type": "image"},
                                          "tab": {"type": "tabular", "numeric": ["size"]}}})
    processors, task = build_pipeline(config)
    task.fit(["a", "b"])
    save_pipeline(tmp_path, config, processors, task)
    written = yaml.safe_load((tmp_path / "config.yaml").read_text())["modalities"]
    assert written["photo"]["encoder"]["name"] == "image_cnn" and written["tab"]["encoder"]["name"] == "tabular_mlp"
