from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import make_config

from polymodal.cli import main


def test_compare_trains_baselines_and_fusions_over_seeds(data_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(make_config(data_dir, tmp_path / "run", ["emb", "specs"], epochs=1)))
    out = tmp_path / "cmp"
    assert main(["compare", str(cfg), "--fusions", "concat,late", "--seeds", "2", "--out", str(out)]) == 0
    runs = pd.read_csv(out / "comparison.csv")
    assert sorted(runs["model"].unique()) == ["concat", "emb", "late", "specs"]
    assert runs.groupby("model")["seed"].apply(sorted).map(tuple).unique().tolist() == [(0, 1)]
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == ["model", "accuracy_mean", "accuracy_std", "macro_f1_mean", "params",
                                     "train_seconds", "latency_ms"]
    assert (summary["latency_ms"] > 0).all() and (summary["accuracy_std"] >= 0).all()
    assert (out / "comparison.png").stat().st_size > 1000
    assert (out / "late" / "seed1" / "model.safetensors").is_file()
    printed = capsys.readouterr().out
    assert "mean +/- std" in printed and "macro_f1" in printed


def test_compare_rejects_unknown_fusion(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(make_config(data_dir, tmp_path / "run", ["emb", "specs"], epochs=1)))
    assert main(["compare", str(cfg), "--fusions", "concat,magic"]) == 2
    assert "unknown fusion 'magic'" in capsys.readouterr().err
