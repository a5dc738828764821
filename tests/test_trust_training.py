"""Issue 12, training and run directories: exact resume, atomic runs, manifest checked on load, finite models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import make_config
from safetensors.torch import load_file

from polymodal.config import parse_config
from polymodal.predictor import Predictor
from polymodal.rundir import RunError
from polymodal.training.fit import train
from polymodal.training.guards import NonFiniteError
from polymodal.training.loop import Callback, Loop

MODS = ["emb", "specs", "title"]


class Interrupted(RuntimeError):
    """Stands in for a kill -9: the run stops with its first checkpoint written and nothing else."""


class StopAtEpoch(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, loop: Loop, module: torch.nn.Module) -> None:
        if loop.current_epoch == self.epoch:
            raise Interrupted


def config(data_dir: Path, out: Path, epochs: int = 3, **training: object):  # type: ignore[no-untyped-def]
    cfg = make_config(data_dir, out, MODS, epochs=epochs, batch_size=8, **training)
    cfg["fusion"]["dropout"] = 0.3  # dropout draws from the global RNG: it must be restored on resume
    return parse_config(cfg)


def test_resume_after_an_interruption_is_bit_identical(data_dir: Path, tmp_path: Path) -> None:
    train(config(data_dir, tmp_path / "straight"))
    with pytest.raises(Interrupted):
        train(config(data_dir, tmp_path / "resumed"), callbacks=[StopAtEpoch(1)])
    assert not (tmp_path / "resumed").exists()  # an interrupted run is not a run directory
    train(config(data_dir, tmp_path / "resumed"), resume=True)
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_without_a_checkpoint_says_so(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no checkpoint to resume from"):
        train(config(data_dir, tmp_path / "run"), resume=True)


def test_existing_run_is_replaced_only_with_overwrite_and_never_mixed(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(config(data_dir, out, epochs=1))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(RunError, match="already exists; pass --overwrite"):
        train(config(data_dir, out, epochs=1))
    with pytest.raises(Interrupted):  # killed half way through replacing it: the old run stays whole
        train(config(data_dir, out, epochs=2, lr=1e-2), overwrite=True, callbacks=[StopAtEpoch(1)])
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name in before} == before
    Predictor.load(out)
    train(config(data_dir, out, epochs=2, lr=1e-2), overwrite=True)
    assert parse_config(make_config(data_dir, out)).run_dir() == out
    assert (out / "config.yaml").read_bytes() != before["config.yaml"]
    Predictor.load(out)


@pytest.fixture(scope="module")
def run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trust") / "run"
    train(config(data_dir, out, epochs=1))
    return out


@pytest.mark.parametrize("damage", ["flip", "truncate", "pickle"])
def test_damaged_weights_are_refused_on_load(run: Path, tmp_path: Path, damage: str) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "flip":
        data[-5] ^= 0x10  # one bit of one weight: it loads silently without the manifest
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(bytes(data[: len(data) // 2]))
    else:
        torch.save({"x": torch.zeros(2)}, weights)
    with pytest.raises(RunError, match="does not match the run's manifest"):
        Predictor.load(copy)


def test_non_finite_training_stops_and_saves_nothing(data_dir: Path, tmp_path: Path) -> None:
    class Poison(Callback):
        def on_train_batch_start(self, loop, module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
            if loop.global_step == 2:
                with torch.no_grad():
                    next(module.parameters()).fill_(float("inf"))

    with pytest.raises(NonFiniteError, match=r"epoch 0, batch 2: the loss is nan.*training.lr"):
        train(config(data_dir, tmp_path / "run"), callbacks=[Poison()])
    assert not (tmp_path / "run").exists()
