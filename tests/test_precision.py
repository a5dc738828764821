"""Mixed precision and gradient accumulation reach the training loop from the config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import ALL_MODALITIES, make_records
from safetensors.torch import load_file

from polymodal.config import ConfigError
from polymodal.factory import parse_config
from polymodal.training.fit import train
from polymodal.training.loop import Callback, Loop


class Probe(Callback):
    """Records the trainer's precision, its optimizer steps and the dtype of the logits while training."""

    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()
        self.precision = ""
        self.steps = 0

    def on_train_start(self, loop: Loop, module: torch.nn.Module) -> None:
        self.precision = loop.precision
        module.model.register_forward_hook(lambda _m, _i, out: self.dtypes.add(out.logits.dtype))

    def on_train_end(self, loop: Loop, module: torch.nn.Module) -> None:
        self.steps = loop.global_step


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prec")
    frame = make_records(root, n=48)
    frame.iloc[:32].to_parquet(root / "train.parquet")  # 32 = 4 batches of 8 = 2 of 16: no partial batch
    frame.iloc[32:].to_parquet(root / "val.parquet")
    return root


def config(root: Path, out: Path, **training: Any) -> dict[str, Any]:
    no_dropout = {m: {**ALL_MODALITIES[m], "encoder": {**ALL_MODALITIES[m]["encoder"], "dropout": 0.0}}
                  for m in ("emb", "specs")}
    return {
        "name": out.name,
        "data": {"train": str(root / "train.parquet"), "val": str(root / "val.parquet")},
        "modalities": no_dropout,
        "target": {"field": "label", "task": "multiclass"},
        "fusion": {"name": "concat", "hidden": 16, "dropout": 0.0},
        "training": {"epochs": 1, "batch_size": 8, "progress_bar": False, "lr": 1e-2, "scheduler": "constant",
                     "warmup_epochs": 0, "grad_clip": None, "patience": None, "imbalance": {"diagnostics": False},
                     **training},
        "output_dir": str(out),
    }


def test_bf16_mixed_runs_under_autocast_on_cpu(split_dir: Path, tmp_path: Path) -> None:
    probe = Probe()
    result = train(parse_config(config(split_dir, tmp_path / "bf16", precision="bf16-mixed")), callbacks=[probe])
    assert probe.precision == "bf16-mixed" and torch.bfloat16 in probe.dtypes
    assert all(v == v for v in result.metrics["val"].values())  # no NaN
    assert json.loads((tmp_path / "bf16" / "metrics.json").read_text())["val"]["accuracy"] >= 0.0


def test_accumulating_two_batches_matches_a_batch_twice_as_large(split_dir: Path, tmp_path: Path) -> None:
    acc, big = Probe(), Probe()
    train(parse_config(config(split_dir, tmp_path / "acc", accumulate_grad_batches=2)), callbacks=[acc])
    train(parse_config(config(split_dir, tmp_path / "big", batch_size=16)), callbacks=[big])
    assert acc.steps == big.steps == 2  # 4 batches of 8, an optimizer step every 2
    a, b = load_file(str(tmp_path / "acc" / "model.safetensors")), load_file(str(tmp_path / "big" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)


def test_unknown_precision_lists_the_allowed_values(split_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"training.precision: .*'bf16-mixed'.*\(got 'bf16'\)"):
        parse_config(config(split_dir, tmp_path / "p", precision="bf16"))
