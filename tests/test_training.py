"""End-to-end: train on every modality type and task, resume, reload a run without unpickling, predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_config

from polymodal.factory import parse_config
from polymodal.predictor import Predictor
from polymodal.training.fit import train


@pytest.fixture(scope="module")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "all"
    train(parse_config(make_config(data_dir, out, epochs=6)))
    return out


def test_run_directory_holds_everything(trained: Path) -> None:
    for name in ("config.yaml", "model.safetensors", "processors.json", "metrics.json", "report.md", "curves.png",
                 "confusion_matrix.png", "logs/metrics.csv"):
        assert (trained / name).is_file(), name
    metrics = json.loads((trained / "metrics.json").read_text())
    assert set(metrics["test"]) == {"accuracy", "macro_f1", "auroc"}
    assert metrics["val"]["accuracy"] > 0.6  # every modality carries the label: the model must learn it


def test_predictor_loads_without_checkpoints_and_predicts(trained: Path, data_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy, ignore=shutil.ignore_patterns("checkpoints"))  # no pickles left
    predictor = Predictor.load(copy)
    frame = pd.read_parquet(data_dir / "data.parquet").head(8)
    labels = predictor.predict(frame, root=data_dir)
    proba = predictor.predict_proba(frame, root=data_dir)
    assert len(labels) == 8 and set(labels) <= {"x", "y", "z"}
    assert list(proba.columns) == ["x", "y", "z"] and np.allclose(proba.sum(1), 1.0, atol=1e-5)
    assert (proba.idxmax(axis=1).to_numpy() == labels).all()
    assert predictor.embed(frame, root=data_dir).shape == (8, 16)
    assert predictor.evaluate(data_dir / "data.parquet")["accuracy"] > 0.6


def test_prediction_with_missing_modalities(trained: Path, data_dir: Path) -> None:
    frame = pd.read_parquet(data_dir / "data.parquet").head(4)
    frame["photo"] = None
    frame.loc[0, "title"] = ""
    predictor = Predictor.load(trained)
    assert len(predictor.predict(frame, root=data_dir)) == 4


@pytest.mark.parametrize(("task", "field", "metric"), [("regression", "score", "rmse"), ("multilabel", "tags", "map"),
                                                        ("binary", "label", "auroc")])
def test_other_tasks_train(data_dir: Path, tmp_path: Path, task: str, field: str, metric: str) -> None:
    frame = pd.read_parquet(data_dir / "data.parquet")
    if task == "binary":
        frame = frame[frame["label"] != "z"]
    frame.to_parquet(tmp_path / "data.parquet")
    for sub in ("img", "wav", "seq"):
        (tmp_path / sub).symlink_to(data_dir / sub)
    result = train(parse_config(make_config(tmp_path, tmp_path / "run", ["emb", "specs"], task=task, field=field,
                                            fusion="late", epochs=2)))
    assert metric in result.metrics["test"]
    preds = Predictor.load(tmp_path / "run").predict(frame.head(3), root=tmp_path)
    assert len(preds) == 3


def test_resume_continues_from_the_last_checkpoint(data_dir: Path, tmp_path: Path) -> None:
    cfg = make_config(data_dir, tmp_path / "run", ["emb", "specs"], epochs=1)
    train(parse_config(cfg))
    cfg["training"]["epochs"] = 3
    result = train(parse_config(cfg), resume=True)
    assert result.epochs == 3
    log = pd.read_csv(tmp_path / "run" / "logs" / "metrics.csv")
    assert sorted(log["epoch"].dropna().unique().tolist()) == [0, 1, 2]
