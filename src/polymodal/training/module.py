"""The LightningModule: loss from the task, AdamW with warmup + cosine, metrics over whole epochs."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytorch_lightning as pl
import torch
from torch import Tensor

from polymodal.config import TrainingConfig
from polymodal.data.batch import Batch
from polymodal.data.dataset import to_model_inputs
from polymodal.model import MultimodalModel, Output
from polymodal.processors import Processor
from polymodal.tasks import Task


class PolymodalModule(pl.LightningModule):
    """Trains a MultimodalModel on one task.

    Args:
        model: the model.
        task: loss, metrics.
        processors: batch-level normalization and augmentation per modality.
        training: optimizer and schedule settings.
    """

    def __init__(self, model: MultimodalModel, task: Task, processors: Mapping[str, Processor],
                 training: TrainingConfig) -> None:
        super().__init__()
        self.model = model
        self.task = task
        self.processors = dict(processors)
        self.training_config = training
        self._val_logits: list[Tensor] = []
        self._val_targets: list[Tensor] = []

    def forward(self, batch: Batch) -> Output:
        return self.model(batch)

    def transfer_batch_to_device(self, batch: Batch, device: torch.device, dataloader_idx: int) -> Batch:
        return batch.to(device)

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        return to_model_inputs(batch, self.processors, train=self.training)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        out = self.model(batch)
        losses = {"loss": self.task.loss(out.logits, batch.target), **out.aux_losses}
        loss = torch.stack(list(losses.values())).sum()
        for name, value in losses.items():  # summed here, logged once per epoch (cheaper than self.log per step)
            self._train_sums[name] = self._train_sums.get(name, 0.0) + value.detach() * batch.size
        self._train_count += batch.size
        return loss

    def on_train_epoch_start(self) -> None:
        self._train_sums: dict[str, Tensor] = {}
        self._train_count = 0

    def on_train_epoch_end(self) -> None:
        for name, total in self._train_sums.items():
            mean = self.trainer.strategy.reduce(total / max(1, self._train_count), reduce_op="mean")
            self.log("train_loss" if name == "loss" else f"train_{name}", mean)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        out = self.model(batch)
        self.log("val_loss", self.task.loss(out.logits, batch.target), batch_size=batch.size, sync_dist=True)
        self._val_logits.append(out.logits.detach())
        self._val_targets.append(batch.target)

    def on_validation_epoch_end(self) -> None:
        if not self._val_logits:
            return
        logits = self.all_gather(torch.cat(self._val_logits)).reshape(-1, self._val_logits[0].shape[1])
        target = self.all_gather(torch.cat(self._val_targets))
        target = target.reshape(-1, *self._val_targets[0].shape[1:])
        self._val_logits.clear()
        self._val_targets.clear()
        for name, value in self.task.metrics(logits, target).items():
            self.log(f"val_{name}", value)

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        cfg = self.training_config
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(total - 1, int(cfg.warmup_epochs * total / cfg.epochs))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, warmup, total, cfg.scheduler))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warmup over `warmup` steps, then constant or cosine decay to zero at `total`."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))
