"""Multilabel decision thresholds tuned on validation instead of a fixed 0.5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from conftest import make_config

from polymodal.config import TargetConfig, parse_config
from polymodal.output import Output
from polymodal.tasks import build_task
from polymodal.training.fit import train
from polymodal.training.thresholds import best_thresholds


def test_thresholds_below_half_when_scores_are_low() -> None:
    p = np.array([[0.30, 0.9], [0.05, 0.8], [0.35, 0.1], [0.02, 0.2]])
    t = np.array([[1, 1], [0, 1], [1, 0], [0, 0]])
    low, high = best_thresholds(p, t)
    assert 0.05 < low <= 0.30 and 0.2 < high <= 0.8


def test_task_predicts_with_its_thresholds_and_saves_them() -> None:
    task = build_task(TargetConfig(field="tags", task="multilabel"))
    task.fit(["a|b", "b"])
    out = Output(logits=torch.full((1, 2), -1.0), fused=torch.zeros(1, 1), features={})  # sigmoid(-1) = 0.27
    assert task.predict(task.scores(out)) == [""]
    task.thresholds = [0.2, 0.5]
    assert task.predict(task.scores(out)) == ["a"]
    again = build_task(TargetConfig(field="tags", task="multilabel"))
    again.load_state(task.state())
    assert again.thresholds == [0.2, 0.5]


def test_multilabel_run_stores_tuned_thresholds(data_dir: Path, tmp_path: Path) -> None:
    frame = pd.read_parquet(data_dir / "data.parquet")
    frame.to_parquet(tmp_path / "data.parquet")
    for sub in ("img", "wav", "seq"):
        (tmp_path / sub).symlink_to(data_dir / sub)
    train(parse_config(make_config(tmp_path, tmp_path / "run", ["emb"], task="multilabel", field="tags",
                                   epochs=1)))
    import json

    state = json.loads((tmp_path / "run" / "processors.json").read_text())["task"]
    assert len(state["thresholds"]) == len(state["classes"])
