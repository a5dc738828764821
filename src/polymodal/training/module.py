"""The training module: task loss + weighted objectives (+ an imbalance remedy), AdamW with warmup + cosine,
metrics and imbalance diagnostics over whole epochs. `training.loop.Loop` calls its hooks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.config import EncoderTraining, TrainingConfig
from polymodal.data.batch import Batch
from polymodal.data.dataset import to_model_inputs
from polymodal.model import MultimodalModel
from polymodal.output import Output
from polymodal.processors import Processor
from polymodal.tasks import Task
from polymodal.training import distributed
from polymodal.training.imbalance import Imbalance


class PolymodalModule(nn.Module):
    """Trains a MultimodalModel on one task, plus the model's objectives.

    Args:
        model: the model.
        task: loss, metrics.
        processors: batch-level normalization and augmentation per modality.
        training: optimizer and schedule settings.
        objective_weights: factor of each of `model.objectives` in the loss (default 1).
        encoder_training: per modality, frozen or fine-tuned encoder and its own learning rate (default:
            fine-tuned at `training.lr`). Frozen encoders get no gradients and stay in eval mode.

    Imbalance probes and the remedies' unimodal heads live in `self.imbalance`, not in the model: they are in
    training checkpoints but not in the saved weights, so predictions never depend on them.
    """

    def __init__(self, model: MultimodalModel, task: Task, processors: Mapping[str, Processor],
                 training: TrainingConfig, objective_weights: Mapping[str, float] | None = None,
                 encoder_training: Mapping[str, EncoderTraining] | None = None) -> None:
        super().__init__()
        self.model = model
        self.task = task
        self.processors = dict(processors)
        self.training_config = training
        self.objective_weights = dict(objective_weights or {})
        self._val_logits: list[Tensor] = []
        self._val_targets: list[Tensor] = []
        self._val_embeddings: list[dict[str, Tensor]] = []
        self.imbalance = Imbalance(model, task, training.imbalance, training.seed)
        self.encoder_training = dict(encoder_training or {})
        self.set_frozen(0)

    def set_frozen(self, epoch: int) -> None:
        """Freeze the encoders that are frozen at `epoch` (no gradients, eval mode), unfreeze the others."""
        self._frozen = frozen_at(self.encoder_training, epoch)
        for m, encoder in self.model.encoders.items():
            encoder.requires_grad_(m not in self._frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> PolymodalModule:
        """As nn.Module.train, but frozen encoders stay in eval mode (batch-norm statistics, no dropout)."""
        super().train(mode)
        for m in getattr(self, "_frozen", ()):
            self.model.encoders[m].eval()
        return self

    def forward(self, batch: Batch) -> Output:
        return self.model(batch)

    def transfer_batch_to_device(self, batch: Batch, device: torch.device, dataloader_idx: int = 0) -> Batch:
        return batch if batch.index.device == device else batch.to(device)

    def prepare_batch(self, batch: Batch, device: torch.device) -> Batch:
        """On the device, with each processor's batch-level normalization (and augmentation when training)."""
        return to_model_inputs(self.transfer_batch_to_device(batch, device), self.processors, train=self.training)

    def objective_losses(self, batch: Batch, out: Output) -> dict[str, Tensor]:
        """Each objective's (unweighted) loss by name."""
        return {name: objective(self.model, batch, out) for name, objective in self.model.objectives.items()}

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        batch = modality_dropout(batch, self.training_config.modality_dropout)
        out = self.model(batch)
        task_loss = self.task.loss(out.logits, batch.target)
        losses = {"loss": task_loss, **out.aux_losses}
        objectives = self.objective_losses(batch, out)
        weighted = [self.objective_weights.get(name, 1.0) * value for name, value in objectives.items()]
        unimodal = self.imbalance.unimodal_losses(batch, out)
        loss = self.imbalance.loss(self.model, task_loss, [*out.aux_losses.values(), *weighted], unimodal)
        self.imbalance.observe_train(batch, out, task_loss, unimodal)
        losses.update(objectives)  # logged unweighted
        losses.update({f"unimodal_{m}": value for m, value in unimodal.items()})
        for name, value in losses.items():  # summed here, logged once per epoch (cheaper than self.log per step)
            self._train_sums[name] = self._train_sums.get(name, 0.0) + value.detach() * batch.size
        self._train_count += batch.size
        return loss

    def on_train_epoch_start(self, epoch: int) -> None:
        self.set_frozen(epoch)
        self._train_sums: dict[str, Tensor] = {}
        self._train_count = 0
        self.imbalance.reset_train()

    def train_epoch_end(self) -> dict[str, Tensor]:
        """The training epoch's logs: mean losses over all processes, diagnostics, the remedy's values."""
        logs = {("train_loss" if name == "loss" else f"train_{name}"): self._reduce(total / max(1, self._train_count),
                                                                                   "mean")
                for name, total in self._train_sums.items()}
        return logs | self.imbalance.train_epoch_end(self._reduce)

    def before_optimizer_step(self, epoch: int) -> None:
        """After backward (and unscaling), before clipping and the step."""
        self.imbalance.before_optimizer_step(self.model, self._reduce, epoch)  # OGM-GE, grad norms

    def after_optimizer_step(self) -> None:
        self.imbalance.after_optimizer_step(self.model)  # OGM-GE on the parameter change (ogm_scale: step)
        for objective in self.model.objectives.values():  # e.g. the contrastive temperature's clamp
            objective.after_step()

    def _reduce(self, x: Tensor, op: str) -> Tensor:
        return distributed.reduce(x, op)

    def validation_step(self, batch: Batch) -> None:
        out = self.model(batch)
        losses = {"loss": self.task.loss(out.logits, batch.target), **self.objective_losses(batch, out)}
        for name, value in losses.items():  # summed here, logged once per epoch (as in training)
            self._val_sums[name] = self._val_sums.get(name, 0.0) + value.detach() * batch.size
        self._val_count += batch.size
        self._val_logits.append(self.task.scores(out).detach())
        if batch.target is not None:
            self._val_targets.append(batch.target)
        if out.embeddings is not None:
            self._val_embeddings.append(out.embeddings)
        self.imbalance.observe_val(batch, out)

    def on_validation_epoch_start(self) -> None:
        self._val_sums: dict[str, Tensor] = {}
        self._val_count = 0

    def validation_epoch_end(self) -> dict[str, Tensor]:
        """The validation epoch's logs: losses (weighted by each process's record count), probe accuracies and the
        task's metrics over the records of all processes."""
        device = next(self.parameters()).device  # NCCL reduces device tensors only
        count = self._reduce(torch.tensor(float(self._val_count), device=device), "sum").clamp_min(1.0)
        logs = {f"val_{name}": self._reduce(total, "sum") / count for name, total in self._val_sums.items()}
        logs |= self.imbalance.val_epoch_end(self._reduce)
        if not self._val_logits:
            return logs
        logits = self._gather(torch.cat(self._val_logits))
        target = self._gather(torch.cat(self._val_targets)) if self._val_targets else None
        embeddings = {m: self._gather(torch.cat([e[m] for e in self._val_embeddings]))
                      for m in self._val_embeddings[0]} if self._val_embeddings else None
        self._val_logits.clear()
        self._val_targets.clear()
        self._val_embeddings.clear()
        metrics = self.task.metrics(logits, target, embeddings)  # type: ignore[arg-type]
        return logs | {f"val_{name}": torch.as_tensor(value) for name, value in metrics.items()}

    def _gather(self, x: Tensor) -> Tensor:
        """(N_r, ...) from each process -> (sum N_r, ...) (as is in one process)."""
        return distributed.gather(x)

    def configure_optimizers(self, total: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        """AdamW over `param_groups`, and its per-step schedule for `total` optimizer steps."""
        cfg = self.training_config
        groups = self.param_groups()
        opt = torch.optim.AdamW(groups, lr=cfg.lr, fused=fused_adam(groups, cfg.precision))
        warmup = min(total - 1, int(cfg.warmup_epochs * total / cfg.epochs))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, warmup, total, cfg.scheduler))
        return opt, sched

    def param_groups(self) -> list[dict[str, Any]]:
        """Weight-decayed and not decayed parameters, per learning rate: encoders with their own `lr` get their
        own groups; encoders frozen for the whole run are left out (those unfreezing later are in, idle until
        they get gradients)."""
        cfg = self.training_config
        by_lr: dict[float, list[nn.Parameter]] = {cfg.lr: [*self.imbalance.heads.parameters()]}  # not the probes
        own = {id(p): m for m, enc in self.model.encoders.items() for p in enc.parameters()}
        for p in self.model.parameters():
            spec = self.encoder_training.get(own.get(id(p), ""), EncoderTraining())
            if spec.mode == "frozen" and spec.unfreeze_after is None:
                continue
            by_lr.setdefault(spec.lr or cfg.lr, []).append(p)
        groups = []
        for lr, params in by_lr.items():
            groups += [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay, "lr": lr},
                       {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0, "lr": lr}]
        return [g for g in groups if g["params"]]

    def on_load_checkpoint(self, checkpoint: dict) -> None:  # type: ignore[type-arg]
        """Checkpoints from runs with other imbalance settings (or none): keep this run's probes and heads."""
        state = checkpoint["state_dict"]
        own = self.imbalance.state_dict(prefix="imbalance.")
        for key in [k for k in state if k.startswith("imbalance.") and k not in own]:
            moved = "imbalance.remedy." + key.removeprefix("imbalance.")  # a remedy's state before remedies/
            value = state.pop(key)
            if moved in own and moved not in state:
                state[moved] = value
        for key, value in own.items():
            state.setdefault(key, value)


def modality_dropout(batch: Batch, rates: float | Mapping[str, float]) -> Batch:
    """Hide each modality of each record with its rate (one draw per record and modality); a record keeps at
    least one of the modalities it had."""
    rate = {m: (rates if isinstance(rates, (int, float)) else rates.get(m, 0.0)) for m in batch.present}
    if not any(rate.values()):
        return batch
    present = torch.stack([batch.present[m] for m in rate], dim=1)  # (B, N)
    p = torch.tensor([rate[m] for m in rate], device=present.device)
    kept = present & (torch.rand(present.shape, device=present.device) >= p)  # (B, N)
    lost_all = present.any(1) & ~kept.any(1)
    if lost_all.any():  # give such records back one of their present modalities, chosen at random
        scores = torch.rand(present.shape, device=present.device).masked_fill(~present, -1.0)
        rescue = torch.zeros_like(kept).scatter_(1, scores.argmax(1, keepdim=True), True)
        kept = torch.where(lost_all[:, None], rescue, kept)
    return replace(batch, present={m: kept[:, i] for i, m in enumerate(rate)})


def fused_adam(groups: list[dict[str, Any]], precision: str) -> bool | None:
    """Whether AdamW can run fused (one kernel per tensor instead of a dozen Python-driven ops; ~3x faster for
    small models on CPU): float32 parameters on CPU (torch >= 2.4) or CUDA, no float16 loss scaler. None: torch's
    default."""
    params = [p for g in groups for p in g["params"]]
    devices = ("cpu", "cuda") if torch.__version__ >= (2, 4) else ("cuda",)  # type: ignore[operator]
    ok = all(p.device.type in devices and p.dtype == torch.float32 for p in params)
    return True if ok and params and not precision.startswith("16") else None


def frozen_at(encoder_training: Mapping[str, EncoderTraining], epoch: int) -> set[str]:
    """Modalities whose encoder is frozen during `epoch` (0-based)."""
    return {m for m, t in encoder_training.items()
            if t.mode == "frozen" and (t.unfreeze_after is None or epoch < t.unfreeze_after)}


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warmup over `warmup` steps, then constant or cosine decay to zero at `total`."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))
