"""`polymodal tune`: Optuna search over the config's `tune:` space, resumable from its storage."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pandas as pd
import pytest
import torch
import yaml
from conftest import make_config

from polymodal.apps.tune import PruningCallback, check_space
from polymodal.cli import main
from polymodal.config import ConfigError
from polymodal.factory import load_config, parse_config

SPACE: dict[str, Any] = {
    "training.lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
    "fusion.name": {"type": "categorical", "choices": ["concat", "late"]},
}


def tune_config(data_dir: Path, tmp_path: Path, space: dict[str, Any]) -> dict[str, Any]:
    cfg = make_config(data_dir, tmp_path / "base", ["emb", "specs"], epochs=2, patience=None)
    cfg["training"]["imbalance"] = {"diagnostics": False}
    cfg["tune"] = {"space": space, "startup_trials": 1}
    return cfg


@pytest.mark.slow
def test_tune_writes_best_config_and_resumes_the_study(data_dir: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tune_config(data_dir, tmp_path, SPACE)))
    out = tmp_path / "tune"
    assert main(["tune", str(path), "--trials", "3", "--out", str(out)]) == 0
    assert "3 trials; best value" in capsys.readouterr().out
    best = load_config(out / "best.yaml")  # a whole, valid config
    assert best.tune is None and best.fusion.name in ("concat", "late") and 1e-3 <= best.training.lr <= 3e-2
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 3 and {"value", "state", "params_training.lr", "params_fusion.name"} <= set(trials.columns)
    assert (out / "study.db").is_file()
    finished = trials[trials["state"] == "COMPLETE"]
    assert best.training.lr == pytest.approx(finished.loc[finished["value"].idxmax(), "params_training.lr"])

    assert main(["tune", str(path), "--trials", "2", "--out", str(out)]) == 0  # same storage: continues
    trials = pd.read_csv(out / "trials.csv")
    assert list(trials["number"]) == [0, 1, 2, 3, 4]
    assert trials["params_training.lr"].nunique() == 5  # the resumed run draws new values
    study = optuna.load_study(study_name="base", storage=f"sqlite:///{out / 'study.db'}")
    assert all(0 in t.intermediate_values for t in study.trials)  # per-epoch reports reach the pruner


def test_pruning_callback_reports_each_epoch_and_prunes_a_weak_trial() -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    trainer = SimpleNamespace(sanity_checking=False, current_epoch=0, callback_metrics={"val_acc": torch.tensor(0.9)})
    good = study.ask()
    PruningCallback(good, "val_acc").on_validation_end(trainer, None)  # type: ignore[arg-type]
    study.tell(good, 0.9)
    weak = study.ask()
    trainer.callback_metrics = {"val_acc": torch.tensor(0.1)}
    with pytest.raises(optuna.TrialPruned, match="epoch 0: val_acc below the median"):
        PruningCallback(weak, "val_acc").on_validation_end(trainer, None)  # type: ignore[arg-type]
    assert weak.storage.get_trial(weak._trial_id).intermediate_values == {0: pytest.approx(0.1)}


def test_bad_search_space_key_is_named(data_dir: Path, tmp_path: Path) -> None:
    bad = tune_config(data_dir, tmp_path, {"training.lrr": {"type": "float", "low": 1e-3, "high": 1e-2}})
    with pytest.raises(ConfigError, match=r"tune.space.training.lrr(.|\n)*training.lrr: unknown key; allowed: epochs"):
        check_space(parse_config(bad))
    bad = tune_config(data_dir, tmp_path, {"fusion.name": {"type": "categorical", "choices": ["concat", "nope"]}})
    with pytest.raises(ConfigError, match=r"tune.space.fusion.name: the value 'nope'(.|\n)*unknown fusion 'nope'"):
        check_space(parse_config(bad))
    with pytest.raises(ConfigError, match=r"tune.space.training.lr.*'low' <= 'high'"):
        parse_config(tune_config(data_dir, tmp_path, {"training.lr": {"type": "float", "low": 1e-2}}))
    with pytest.raises(ConfigError, match=r"tune.space.training.lr.type.*'float', 'int' or 'categorical'"):
        parse_config(tune_config(data_dir, tmp_path, {"training.lr": {"type": "loguniform"}}))
    path = tmp_path / "plain.yaml"
    plain = tune_config(data_dir, tmp_path, SPACE)
    del plain["tune"]
    path.write_text(yaml.safe_dump(plain))
    assert main(["tune", str(path), "--trials", "1", "--out", str(tmp_path / "t")]) == 2  # no tune section
