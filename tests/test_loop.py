"""polymodal's own training loop (issue 14): clipping, early stopping, the best checkpoint, the callback hooks,
resuming from a checkpoint of the earlier Lightning-based trainer, and how processes find their place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from conftest import make_config
from safetensors.torch import load_file
from torch import nn

from polymodal.config import ConfigError, TrainingConfig, parse_config
from polymodal.training import distributed
from polymodal.training.fit import train
from polymodal.training.loop import Callback, Loop

MODS = ["emb", "specs"]


class NoHooks(nn.Module):
    """The module hooks `Loop.optimizer_step` calls, around one parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(4))

    def before_optimizer_step(self, epoch: int) -> None: ...

    def after_optimizer_step(self) -> None: ...


def test_gradients_are_clipped_to_grad_clip_before_the_step(tmp_path: Path) -> None:
    module = NoHooks()
    cfg = TrainingConfig(grad_clip=0.5)
    loop = Loop(module, cfg, distributed.Processes(), tmp_path, "val_loss", "min")  # type: ignore[arg-type]
    loop.optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
    loop.scheduler = torch.optim.lr_scheduler.LambdaLR(loop.optimizer, lambda step: 1.0)
    loop.params = [module.w]
    module.w.grad = torch.tensor([30.0, 40.0, 0.0, 0.0])  # norm 50
    loop.optimizer_step()
    torch.testing.assert_close(module.w.detach(), torch.tensor([-0.3, -0.4, 0.0, 0.0]))  # SGD moved by norm 0.5
    assert loop.global_step == 1 and module.w.grad is None


def test_early_stopping_stops_after_patience_epochs_without_improvement(data_dir: Path, tmp_path: Path) -> None:
    raw = make_config(data_dir, tmp_path / "run", MODS, epochs=6, patience=1, lr=1e-12, scheduler="constant",
                      warmup_epochs=0, monitor="val_accuracy")
    result = train(parse_config(raw), report=False)
    assert result.epochs == 2  # epoch 0 is the best; epoch 1 does not beat it: stop
    log = pd.read_csv(tmp_path / "run" / "logs" / "metrics.csv")
    assert sorted(log["epoch"].unique().tolist()) == [0, 1]


def test_best_checkpoint_is_the_best_epoch_and_the_saved_weights(data_dir: Path, tmp_path: Path) -> None:
    raw = make_config(data_dir, tmp_path / "run", MODS, epochs=4, patience=None, monitor="val_loss", lr=3e-2)
    train(parse_config(raw), report=False)
    log = pd.read_csv(tmp_path / "run" / "logs" / "metrics.csv")
    val = log.dropna(subset=["val_loss"]).set_index("epoch")["val_loss"]
    assert list(val.index) == [0, 1, 2, 3] and {"train_loss", "step"} <= set(log.columns)
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=True)
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert best["epoch"] == int(val.idxmin()) + 1 and last["epoch"] == 4
    assert best["best_score"] == pytest.approx(val.min(), rel=1e-6)
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    for key, value in saved.items():
        torch.testing.assert_close(best["state_dict"]["model." + key], value)


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_train_start(self, loop: Loop, module: nn.Module) -> None:
        self.calls.append(("start", loop.current_epoch))

    def on_train_epoch_start(self, loop: Loop, module: nn.Module) -> None:
        self.calls.append(("epoch", loop.current_epoch))

    def on_train_batch_start(self, loop: Loop, module: nn.Module, batch: Any, batch_idx: int) -> None:
        self.calls.append(("batch", loop.current_epoch, batch_idx, loop.global_step))

    def on_validation_end(self, loop: Loop, module: nn.Module) -> None:
        self.calls.append(("validated", loop.current_epoch, sorted(loop.callback_metrics)))

    def on_train_end(self, loop: Loop, module: nn.Module) -> None:
        self.calls.append(("end", loop.current_epoch, loop.global_step))


def test_callbacks_see_each_epoch_batch_and_validation_in_order(data_dir: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    raw = make_config(data_dir, tmp_path / "run", MODS, epochs=2, batch_size=16, accumulate_grad_batches=2)
    train(parse_config(raw), callbacks=[recorder], report=False)
    calls = recorder.calls
    batches = [c for c in calls if c[0] == "batch"]
    per_epoch = len(batches) // 2
    assert calls[0] == ("start", 0) and calls[1] == ("epoch", 0)
    assert [c[2] for c in batches] == list(range(per_epoch)) * 2
    steps = -(-per_epoch // 2)  # an optimizer step every 2 batches, and one for a last odd batch
    assert calls[-1] == ("end", 2, 2 * steps)
    validated = [c for c in calls if c[0] == "validated"]
    assert [c[1] for c in validated] == [0, 1]
    assert {"val_accuracy", "val_loss", "train_loss"} <= set(validated[0][2])


def lightning_layout(ckpt: dict[str, Any]) -> dict[str, Any]:
    """Our checkpoint as the Lightning-based trainer of earlier versions laid it out."""
    return {"epoch": ckpt["epoch"] - 1, "global_step": ckpt["global_step"], "state_dict": ckpt["state_dict"],
            "packaged_tensors": ckpt["packaged_tensors"], "optimizer_states": [ckpt["optimizer"]],
            "lr_schedulers": [ckpt["scheduler"]], "pytorch-lightning_version": "2.5.0",
            "callbacks": {"RngState": ckpt["rng"],
                          "ModelCheckpoint{'monitor': 'val_accuracy', 'mode': 'max'}": {
                              "best_model_score": torch.tensor(ckpt["best_score"])},
                          "EarlyStopping{'monitor': 'val_accuracy', 'mode': 'max'}": {
                              "wait_count": ckpt["wait"], "best_score": torch.tensor(ckpt["best_score"])}}}


def test_a_checkpoint_in_lightnings_layout_resumes_like_our_own(data_dir: Path, tmp_path: Path) -> None:
    for name in ("ours", "lightning"):
        train(parse_config(make_config(data_dir, tmp_path / name, MODS, epochs=1)), report=False)
    last = tmp_path / "lightning" / "checkpoints" / "last.ckpt"
    torch.save(lightning_layout(torch.load(last, weights_only=True)), last)
    runs = {}
    for name in ("ours", "lightning"):
        runs[name] = train(parse_config(make_config(data_dir, tmp_path / name, MODS, epochs=3)), resume=True,
                           report=False)
    assert runs["ours"].epochs == runs["lightning"].epochs == 3
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("ours", "lightning"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fsdp_is_a_config_error_that_says_what_to_use(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"training.strategy.*'fsdp' is not supported; use auto or ddp"):
        parse_config(make_config(data_dir, tmp_path / "run", MODS, strategy="fsdp"))


def test_processes_find_their_place_from_torchrun_or_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.launched() is None
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[07-08],cpu1")
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    env = distributed.launched()
    assert env is not None and (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"]) == ("3", "4", "1")
    assert env["MASTER_ADDR"] == "gpu07" and env["MASTER_PORT"] == str(15000 + 1234)
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "host0")
    env = distributed.launched()  # torchrun's variables win
    assert env is not None and (env["RANK"], env["WORLD_SIZE"], env["MASTER_ADDR"]) == ("5", "8", "host0")
    assert distributed.first_host("node3") == "node3"


def test_a_launcher_with_another_process_count_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match=r"started 3 processes but training.devices x training.num_nodes = 2 x 1"):
        distributed.start(TrainingConfig(devices=2))


def test_a_resumed_streamed_run_equals_the_uninterrupted_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stream's per-epoch shard order and shuffling buffer go on at the epoch the run resumes at."""
    from test_streaming import stream_config, write_shards
    from test_trust_training import Interrupted, StopAtEpoch

    write_shards(tmp_path / "shards", "train", [10, 10, 10], seed=0)
    write_shards(tmp_path / "shards", "val", [6], seed=1)

    def config(name: str) -> Any:
        return parse_config(stream_config(tmp_path, str(tmp_path / "shards" / "train-{000..002}.tar"),
                                          str(tmp_path / "shards" / "val-000.tar"), tmp_path / name, ["emb"]))

    monkeypatch.setattr("polymodal.training.fit.load_best", lambda module, loop: None)  # the last epoch's weights
    train(config("straight"), report=False)
    with pytest.raises(Interrupted):
        train(config("resumed"), callbacks=[StopAtEpoch(1)], report=False)
    train(config("resumed"), resume=True, report=False)
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("straight", "resumed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
