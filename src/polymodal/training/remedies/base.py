"""The imbalance-remedy contract, its registry, and what several remedies share.

A remedy is a small strategy object: `Imbalance` (the coordinator of a training module) calls its hooks at fixed
points of the training step, after the backward pass, around the optimizer step and at the ends of epochs, and
never asks which remedy it runs. Each remedy is one file of this package, registered by the name that
`training.imbalance.method` takes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from polymodal.config import ImbalanceConfig
from polymodal.data.batch import Batch
from polymodal.fusion.base import FusionOutput
from polymodal.layers import EncoderOutput
from polymodal.model import MultimodalModel
from polymodal.output import Output
from polymodal.registry import Registry
from polymodal.tasks import Task

Reduce = Callable[[Tensor, str], Tensor]  # (tensor, "sum" | "mean") -> reduced over processes
Params = Mapping[str, Sequence[nn.Parameter]]  # each encoder's parameters, by modality

REMEDIES: Registry[Remedy] = Registry("imbalance remedy")


class Remedy(nn.Module):
    """One imbalance remedy; every hook defaults to doing nothing (plain joint training).

    Class attributes say what the coordinator must provide:
        unimodal: trains with each modality's unimodal task loss (the coordinator adds linear heads on the pooled
            features when the fusion has no per-modality branches).
        confidence: reads each modality's true-class confidence on every training batch (single-label tasks).
        own_scores: computes those confidences itself (`unimodal_scores`), so no linear probes are needed.

    Args:
        model: the model being trained.
        task: the fitted task.
        config: `training.imbalance`.
        seed: seeds any random stream of the remedy's own.
        branches: whether the fusion has per-modality branches (`Output.modality_logits`).
    """

    unimodal: ClassVar[bool] = False
    confidence: ClassVar[bool] = False
    own_scores: bool = False

    def __init__(self, model: MultimodalModel, task: Task, config: ImbalanceConfig, seed: int = 0,
                 branches: bool = False) -> None:
        super().__init__()
        self.task = task
        self.config = config
        self.seed = seed
        self.modalities = model.modalities

    @classmethod
    def check_task(cls, task: Task, method: str) -> None:
        """Raise ValueError (naming the config key) if this remedy, registered as `method`, cannot train `task`."""
        if task.num_outputs == 0:
            raise ValueError(f"training.imbalance.method: {method!r} trains with unimodal task losses or "
                             f"confidences and needs a task head; task {task.name} has none (use method: none)")

    def loss(self, model: MultimodalModel, heads: nn.Module, task_loss: Tensor, others: Sequence[Tensor],
             unimodal: Mapping[str, Tensor]) -> Tensor:
        """The loss to back-propagate from the task loss, the `others` (fusion auxiliary losses and weighted
        objectives) and the unimodal losses (`heads`: the coordinator's unimodal heads, possibly empty)."""
        return torch.stack([task_loss, *others]).sum() if others else task_loss

    def unimodal_scores(self, out: Output, batch: Batch) -> dict[str, Tensor] | None:
        """Per-modality logits (B, K) whose true-class probability is the confidence (`own_scores` remedies)."""
        return None

    def observe_train(self, batch: Batch, task_loss: Tensor, unimodal: Mapping[str, Tensor]) -> None:
        """Called on each training batch, after the loss."""

    def observe_confidence(self, modality: str, pair: Tensor) -> None:
        """(2,) [sum, count] of a modality's true-class probability on this training batch (`confidence` remedies)."""

    def observe_val(self, batch: Batch, out: Output, unimodal: Callable[[], dict[str, Tensor]]) -> None:
        """Called on each validation batch; `unimodal()` computes the unimodal losses on demand."""

    def before_optimizer_step(self, params: Params, reduce: Reduce, epoch: int) -> None:
        """After backward and before the optimizer step: the gradients may be changed here."""

    def after_optimizer_step(self, params: Params) -> None:
        """After the optimizer step: the parameters may be changed here."""

    def train_epoch_end(self, reduce: Reduce) -> dict[str, Tensor]:
        """What to log for the training epoch (called after that epoch's validation)."""
        return {}

    def val_epoch_end(self, reduce: Reduce) -> None:
        """Called at the end of each validation epoch."""

    def reset_train(self) -> None:
        """Forget the training epoch's accumulators."""

    def reset_val(self) -> None:
        """Forget the validation epoch's accumulators."""


def true_class_probability(logits: Tensor, target: Tensor) -> Tensor:
    """(B, K) multiclass logits or (B, 1) binary logit, (B,) class indices -> (B,) probability of the true class."""
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0].float())  # (B,)
        return torch.where(target.bool(), p, 1.0 - p)
    return logits.float().softmax(1).gather(1, target[:, None].long()).squeeze(1)  # (B,)


def masked_loss(task: Task, logits: Tensor, target: Tensor, present: Tensor) -> Tensor:
    """The task loss over the records where the modality is present (0, still in the graph, if none is)."""
    if bool(present.all()):
        return task.loss(logits, target)
    if not bool(present.any()):
        return logits.sum() * 0.0
    return task.loss(logits[present], target[present])


def pooled_trial(model: MultimodalModel) -> FusionOutput | None:
    """The fusion's output on two all-zero records of pooled features, or None if it cannot run on pooled
    features alone (it needs tokens)."""
    fusion = model.fusion
    device = next(fusion.parameters(), torch.zeros(())).device
    features = {m: EncoderOutput(torch.zeros(2, d, device=device)) for m, d in fusion.in_dims.items()}  # (2, D_m)
    present = {m: torch.ones(2, dtype=torch.bool, device=device) for m in features}
    was_training = fusion.training
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            return fusion.eval()(features, present)
    except (RuntimeError, ValueError, TypeError, KeyError):
        return None
    finally:
        fusion.train(was_training)


def has_modality_logits(model: MultimodalModel) -> bool:
    """Whether the model's fusion keeps per-modality branches (so that `Output.modality_logits` is set)."""
    trial = pooled_trial(model)
    return trial is not None and trial.per_modality is not None
