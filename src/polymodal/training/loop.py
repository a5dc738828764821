"""polymodal's training loop: epochs of optimizer steps, validation, checkpoints, early stopping and the CSV log.

Per training batch it does only what the step needs: move the batch, forward under the precision's autocast,
backward (without the gradient all-reduce on accumulation steps), and every `accumulate_grad_batches` batches the
optimizer step (the module's before/after hooks, gradient clipping, the LR schedule). Nothing reads a value back
from the device per step: the losses are checked for NaN/inf once per epoch (naming the first bad batch).

Each epoch: train -> validate (the task's metrics, over all processes) -> the epoch's training logs -> the
callbacks' `on_validation_end` -> `checkpoints/best.ckpt` when the monitored metric improved, `last.ckpt` always
-> early stopping. The checkpoint is written when the epoch is complete, with every state the next epoch starts
from (model, optimizer, schedule, loss scaler, every random generator, counters, best score, early-stopping
wait), so a resumed run continues exactly as the uninterrupted one.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, Sampler

from polymodal.config import TrainingConfig
from polymodal.training import distributed
from polymodal.training.checkpoint_refs import KEY, load_checkpoint_state, strip_packaged
from polymodal.training.csvlog import CsvLog
from polymodal.training.guards import LIKELY_CAUSES, NonFiniteError, first_nonfinite, rng_state, set_rng_state
from polymodal.training.precision import Precision

if TYPE_CHECKING:
    from polymodal.tasks.base import Task
    from polymodal.training.module import PolymodalModule

FORMAT = "polymodal-loop/1"


class Callback:
    """Hooks a caller can pass to `train(callbacks=...)`; each gets the loop (`current_epoch`, `global_step`,
    `precision`, `callback_metrics`, `should_stop`) and the training module. All default to doing nothing; raising
    from a hook stops the run (nothing is saved as a finished run)."""

    def on_train_start(self, loop: Loop, module: nn.Module) -> None: ...

    def on_train_epoch_start(self, loop: Loop, module: nn.Module) -> None: ...

    def on_train_batch_start(self, loop: Loop, module: nn.Module, batch: Any, batch_idx: int) -> None: ...

    def on_train_batch_end(self, loop: Loop, module: nn.Module, batch: Any, batch_idx: int) -> None:
        """After the batch's backward pass (and the optimizer step when it was due)."""

    def on_validation_end(self, loop: Loop, module: nn.Module) -> None:
        """After the epoch's validation; `loop.callback_metrics` holds the epoch's logged values."""

    def on_train_end(self, loop: Loop, module: nn.Module) -> None: ...


def monitored(training: TrainingConfig, task: Task) -> tuple[str, str]:
    """The metric that picks the best epoch (`training.monitor`, default the task's validation metric) and whether
    it is better higher ("max") or lower ("min"): a loss is lower; a task metric goes the task's way."""
    monitor = training.monitor or f"val_{task.monitor}"
    return monitor, "min" if monitor.endswith("loss") else task.mode


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's (every device's) random generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader workers: numpy and Python draw from the worker's own seed (torch already seeds the worker)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def set_deterministic(on: bool) -> None:
    """torch.use_deterministic_algorithms, without importing torch._inductor (seconds) to set a flag of its
    config that only compiled code reads: set there only when it is already imported."""
    if hasattr(torch._C, "_set_deterministic_algorithms"):
        torch._C._set_deterministic_algorithms(on)
        inductor = sys.modules.get("torch._inductor.config")
        if inductor is not None:
            inductor.deterministic = on  # type: ignore[attr-defined]
    else:
        torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.benchmark = False
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


class StepRunner(nn.Module):
    """The training step as a module's forward, so that DistributedDataParallel syncs its gradients."""

    def __init__(self, module: PolymodalModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, batch: Any, batch_idx: int) -> Tensor:
        return self.module.training_step(batch, batch_idx)


class Loop:
    """Fits a training module (`PolymodalModule`) with `training` settings.

    Args:
        module: the module; its hooks are called at fixed points (see the module docstring).
        training: `training` of the config.
        procs: this process's place in the run (`distributed.start`).
        run_dir: where rank 0 writes `checkpoints/` and `logs/metrics.csv`.
        monitor, mode: the validation metric that picks the best epoch and stops early, and its direction.
        callbacks: extra hooks (e.g. the pruning of `polymodal tune`).
    """

    def __init__(self, module: PolymodalModule, training: TrainingConfig, procs: distributed.Processes, run_dir: Path,
                 monitor: str, mode: str, callbacks: Sequence[Callback] = ()) -> None:
        self.module, self.cfg, self.procs, self.run_dir = module, training, procs, run_dir
        self.monitor, self.mode, self.callbacks = monitor, mode, list(callbacks)
        self.device = procs.device
        self.amp = Precision(training.precision, self.device)
        self.current_epoch = 0
        self.global_step = 0
        self.best_score: float | None = None
        self.wait = 0
        self.should_stop = False
        self.callback_metrics: dict[str, float] = {}
        self.seconds = 0.0  # wall time of this process's epochs (training + validation), not the set-up before
        self.best_path = run_dir / "checkpoints" / "best.ckpt"
        self.last_path = run_dir / "checkpoints" / "last.ckpt"
        self._ddp: nn.Module | None = None
        self._trainable: frozenset[int] = frozenset()

    @property
    def precision(self) -> str:
        """The `training.precision` setting (for callbacks)."""
        return self.amp.name

    # ---- the run ----------------------------------------------------------------------------------------------
    def fit(self, train_loader: DataLoader[Any], val_loader: DataLoader[Any], resume: bool = False) -> None:
        set_deterministic(self.cfg.deterministic)
        train_loader, val_loader = self.distribute(train_loader, True), self.distribute(val_loader, False)
        if train_loader.num_workers > 0 and train_loader.worker_init_fn is None:
            train_loader.worker_init_fn = seed_worker
        self.module.to(self.device)
        self.amp.convert_module(self.module)
        batches = len(train_loader)
        total = max(1, math.ceil(batches / self.cfg.accumulate_grad_batches) * self.cfg.epochs)
        self.optimizer, self.scheduler = self.module.configure_optimizers(total)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        log = CsvLog(self.run_dir / "logs" / "metrics.csv") if self.procs.chief else None
        if resume:
            distributed.barrier()  # rank 0 has put the run to resume in place (start_run) before any rank reads it
            self.restore(torch.load(self.last_path, map_location="cpu", weights_only=True))
            if log is not None:
                log = CsvLog(log.path, resume_epoch=self.current_epoch)
        for callback in self.callbacks:
            callback.on_train_start(self, self.module)
        while self.current_epoch < self.cfg.epochs and not self.should_stop:
            start = time.perf_counter()
            self.run_epoch(train_loader, val_loader, log)
            self.seconds += time.perf_counter() - start
        for callback in self.callbacks:
            callback.on_train_end(self, self.module)

    def run_epoch(self, train_loader: DataLoader[Any], val_loader: DataLoader[Any], log: CsvLog | None) -> None:
        epoch = self.current_epoch
        set_epoch(train_loader, epoch, self.cfg.seed)
        self.module.on_train_epoch_start(epoch)
        for callback in self.callbacks:
            callback.on_train_epoch_start(self, self.module)
        self.train_batches(train_loader)
        val = self.validate(val_loader)
        train = tensors_to_floats(self.module.train_epoch_end())
        self.callback_metrics = {**val, **train}
        for callback in self.callbacks:
            callback.on_validation_end(self, self.module)
        improved = self.track()
        self.current_epoch = epoch + 1
        if log is not None:
            log.add(epoch, self.global_step - 1, val)
            log.add(epoch, self.global_step - 1, train)
            log.write()
        self.save(improved)

    # ---- training ---------------------------------------------------------------------------------------------
    def train_batches(self, loader: DataLoader[Any]) -> None:
        module, accum, amp = self.module, self.cfg.accumulate_grad_batches, self.amp
        self.sync_trainable()
        runner = self._ddp if self._ddp is not None else module.training_step
        module.train()
        n = len(loader)
        losses: list[Tensor] = []
        starts = [c for c in self.callbacks if type(c).on_train_batch_start is not Callback.on_train_batch_start]
        ends = [c for c in self.callbacks if type(c).on_train_batch_end is not Callback.on_train_batch_end]
        for i, raw in enumerate(self.progress(loader)):
            for callback in starts:
                callback.on_train_batch_start(self, module, raw, i)
            batch = amp.convert_input(module.prepare_batch(raw, self.device))
            stepping = (i + 1) % accum == 0 or i + 1 == n
            ddp = self._ddp
            sync = ddp.no_sync() if ddp is not None and not stepping else nullcontext()  # type: ignore[operator]
            with sync:
                with amp.autocast():
                    loss = runner(batch, i)
                amp.backward(loss / accum if accum > 1 else loss)
            losses.append(loss.detach())
            if stepping:
                self.optimizer_step()
            for callback in ends:
                callback.on_train_batch_end(self, module, raw, i)
        self.check_losses(losses)

    def optimizer_step(self) -> None:
        self.amp.unscale(self.optimizer)
        self.module.before_optimizer_step(self.current_epoch)
        if self.cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip, foreach=True)
        self.amp.step(self.optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.module.after_optimizer_step()
        self.global_step += 1

    def check_losses(self, losses: list[Tensor]) -> None:
        """Raise NonFiniteError naming the first batch whose loss was NaN or infinite (one read per epoch)."""
        if not losses:
            return
        finite = torch.isfinite(torch.stack([x.float() for x in losses]))
        bad = distributed.reduce((~finite).sum().float(), "sum")
        if bad.item() == 0:
            return
        where = int((~finite).nonzero()[0].item()) if not finite.all() else -1
        value = losses[where].item() if where >= 0 else float("nan")
        place = f"batch {where}" if where >= 0 else "a batch of another process"
        raise NonFiniteError(f"training stopped at epoch {self.current_epoch}, {place}: the loss is {value}; nothing "
                             f"was saved as a finished run. {LIKELY_CAUSES}")

    def sync_trainable(self) -> None:
        """Under DDP, wrap the module again when the set of trained parameters changed (an encoder unfrozen)."""
        if not self.procs.distributed:
            return
        trainable = frozenset(id(p) for p in self.module.parameters() if p.requires_grad)
        if self._ddp is None or trainable != self._trainable:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self._ddp = DistributedDataParallel(StepRunner(self.module), device_ids=ids)
            self._trainable = trainable

    def progress(self, loader: Iterable[Any]) -> Iterable[Any]:
        if not (self.cfg.progress_bar and self.procs.chief):
            return loader
        from tqdm.auto import tqdm

        return tqdm(loader, desc=f"epoch {self.current_epoch}", leave=False, dynamic_ncols=True)

    # ---- validation -------------------------------------------------------------------------------------------
    def validate(self, loader: DataLoader[Any]) -> dict[str, float]:
        name = first_nonfinite(self.module)
        if name is not None:
            raise NonFiniteError(f"training stopped at epoch {self.current_epoch} (optimizer step {self.global_step}): "
                                 f"weight {name!r} is not finite; nothing was saved as a finished run. {LIKELY_CAUSES}")
        module = self.module
        module.eval()
        module.on_validation_epoch_start()
        with torch.no_grad():
            for batch in loader:
                batch = self.amp.convert_input(module.prepare_batch(batch, self.device))
                with self.amp.autocast():
                    module.validation_step(batch)
        return tensors_to_floats(module.validation_epoch_end())

    # ---- best epoch, early stopping, checkpoints --------------------------------------------------------------
    def track(self) -> bool:
        """Whether this epoch is the best so far by `monitor`; counts epochs without improvement."""
        if self.monitor not in self.callback_metrics:
            raise ValueError(f"training.monitor: {self.monitor!r} was not logged; logged: "
                             f"{sorted(k for k in self.callback_metrics if k.startswith('val_'))}")
        score = self.callback_metrics[self.monitor]
        better = math.isfinite(score) and (self.best_score is None or
                                           (score > self.best_score if self.mode == "max" else score < self.best_score))
        if better:
            self.best_score, self.wait = score, 0
        else:
            self.wait += 1
        stop = self.cfg.patience is not None and self.wait >= self.cfg.patience
        self.should_stop = self.should_stop or distributed.broadcast_flag(stop, self.device)
        return better

    def state(self) -> dict[str, Any]:
        state, packaged = strip_packaged(self.module)
        return {"format": FORMAT, "state_dict": state, KEY: packaged,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.amp.scaler.state_dict() if self.amp.scaler is not None else None,
                "rng": rng_state(), "epoch": self.current_epoch, "global_step": self.global_step,
                "best_score": self.best_score, "wait": self.wait, "should_stop": self.should_stop,
                "monitor": self.monitor}

    def save(self, improved: bool) -> None:
        if not self.procs.chief:
            return
        state = self.state()
        self.last_path.parent.mkdir(parents=True, exist_ok=True)
        if improved:
            atomic_save(state, self.best_path)
        atomic_save(state, self.last_path)

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from a checkpoint of this loop (or one Lightning wrote for an earlier polymodal)."""
        checkpoint = from_lightning(checkpoint) if "optimizer_states" in checkpoint else checkpoint
        self.module.on_load_checkpoint(checkpoint)
        load_checkpoint_state(self.module, checkpoint)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if self.amp.scaler is not None and checkpoint.get("scaler"):
            self.amp.scaler.load_state_dict(checkpoint["scaler"])
        if checkpoint.get("rng"):
            set_rng_state(checkpoint["rng"])
        self.current_epoch, self.global_step = int(checkpoint["epoch"]), int(checkpoint["global_step"])
        self.best_score, self.wait = checkpoint.get("best_score"), int(checkpoint.get("wait", 0))
        self.should_stop = bool(checkpoint.get("should_stop", False))

    # ---- data over processes ----------------------------------------------------------------------------------
    def distribute(self, loader: DataLoader[Any], train: bool) -> DataLoader[Any]:
        """Under DDP, each process gets its share of an in-memory split: training through a DistributedSampler
        (shuffled by seed + epoch, padded to equal shares), validation by striding (no record twice)."""
        if not self.procs.distributed or isinstance(loader.dataset, IterableDataset):
            return loader
        world, rank = self.procs.world, self.procs.rank
        sampler: Sampler[int] = (DistributedSampler(loader.dataset, world, rank, shuffle=True, seed=self.cfg.seed)
                                 if train else Strided(len(loader.dataset), rank, world))  # type: ignore[arg-type]
        return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler, collate_fn=loader.collate_fn,
                          num_workers=loader.num_workers, persistent_workers=loader.num_workers > 0,
                          generator=torch.Generator().manual_seed(self.cfg.seed))


class Strided(Sampler[int]):
    """Positions rank, rank + world, ... of n (an evaluation split over processes: uneven, never repeated)."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.n, self.rank, self.world = n, rank, world

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


def set_epoch(loader: DataLoader[Any], epoch: int, seed: int) -> None:
    """The epoch's shuffle (sampler or stream) and worker seeds depend on (seed, epoch) alone: a resumed run
    draws what the uninterrupted one drew."""
    for holder in (loader.sampler, getattr(loader, "batch_sampler", None), loader.dataset):
        if callable(getattr(holder, "set_epoch", None)):
            holder.set_epoch(epoch)  # type: ignore[union-attr]
    if isinstance(loader.generator, torch.Generator):
        loader.generator.manual_seed(seed * 1_000_003 + epoch)


def tensors_to_floats(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()}


def atomic_save(state: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def from_lightning(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint written by the Lightning-based trainer of earlier versions, in this loop's layout."""
    callbacks = ckpt.get("callbacks", {})
    stop = next((v for k, v in callbacks.items() if str(k).startswith("EarlyStopping")), {})
    best = next((v for k, v in callbacks.items() if str(k).startswith("ModelCheckpoint")), {})
    score = best.get("best_model_score", stop.get("best_score"))
    score = float(score) if score is not None and math.isfinite(float(score)) else None
    return {"state_dict": ckpt["state_dict"], KEY: ckpt.get(KEY, []), "optimizer": ckpt["optimizer_states"][0],
            "scheduler": ckpt["lr_schedulers"][0], "scaler": ckpt.get("MixedPrecision"),
            "rng": callbacks.get("RngState"), "epoch": int(ckpt["epoch"]) + 1, "global_step": int(ckpt["global_step"]),
            "best_score": score, "wait": int(stop.get("wait_count", 0))}

