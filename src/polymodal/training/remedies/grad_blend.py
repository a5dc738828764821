"""`grad_blend`: Gradient-Blending (Wang et al., CVPR 2020, the online variant).

loss = w_fused * L_fused + sum_m w_m * L_m. Every `blend_window` epochs (the paper's super-epoch), for every head k
(fused and each modality), generalisation dG_k = drop of its validation loss since the previous estimate and
overfitting change dO_k = change of (validation loss - training loss); w_k is proportional to
max(dG_k, 0) / dO_k^2 and the weights sum to 1. Simplifications: the training loss is the mean over the last
epoch's steps (not re-measured at its end); the first reference is the losses of the first training batch, with
no overfitting yet; weights start uniform and are kept when no head improved. Logged: `blend_weight_fused`,
`blend_weight_<m>`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from polymodal.config import ImbalanceConfig
from polymodal.data.batch import Batch
from polymodal.model import MultimodalModel
from polymodal.output import Output
from polymodal.tasks import Task
from polymodal.training.remedies.base import REMEDIES, Reduce, Remedy


def blend_weights(generalization: Mapping[str, float], overfitting: Mapping[str, float],
                  min_overfitting: float = 1e-3) -> dict[str, float] | None:
    """Gradient-Blending weights: w_k proportional to max(dG_k, 0) / dO_k^2, summing to 1 (None if no dG_k > 0).

    Args:
        generalization: dG_k, the drop of head k's validation loss over the estimation window.
        overfitting: dO_k, the change of head k's (validation loss - training loss) over the window;
            |dO_k| is floored at `min_overfitting` to keep the ratio finite.
    """
    raw = {k: max(g, 0.0) / max(abs(overfitting[k]), min_overfitting) ** 2 for k, g in generalization.items()}
    total = sum(raw.values())
    return {k: v / total for k, v in raw.items()} if total > 0 else None


@REMEDIES.register("grad_blend")
class GradBlend(Remedy):
    """Weights the fused and unimodal losses, re-estimated from validation every `blend_window` epochs. The
    weights and their reference are buffers, saved in checkpoints so that a resumed run goes on blending alike."""

    unimodal = True

    def __init__(self, model: MultimodalModel, task: Task, config: ImbalanceConfig, seed: int = 0,
                 branches: bool = False) -> None:
        super().__init__(model, task, config, seed, branches)
        n = len(self.modalities) + 1  # the fused head, then each modality
        self.register_buffer("blend", torch.full((n,), 1.0 / n))
        self.register_buffer("blend_reference", torch.full((2, n), math.nan))  # val loss, overfitting
        self._epochs = 0
        self._val_losses: Tensor | None = None
        self.reset_train()
        self.reset_val()

    @property
    def names(self) -> list[str]:
        return ["fused", *self.modalities]

    def loss(self, model: MultimodalModel, heads: nn.Module, task_loss: Tensor, others: Sequence[Tensor],
             unimodal: Mapping[str, Tensor]) -> Tensor:
        weighted = [self.blend[i + 1] * unimodal[m] for i, m in enumerate(self.modalities) if m in unimodal]
        return torch.stack([self.blend[0] * task_loss, *others, *weighted]).sum()

    def observe_train(self, batch: Batch, task_loss: Tensor, unimodal: Mapping[str, Tensor]) -> None:
        losses = torch.stack([task_loss.detach(), *(unimodal[m].detach() for m in self.modalities)]).float()
        if torch.isnan(self.blend_reference).all():  # untrained: validation loss ~ training loss, no overfitting
            self.blend_reference.copy_(torch.stack([losses, torch.zeros_like(losses)]))
        self._train = self._train + losses * batch.size
        self._count += batch.size

    def observe_val(self, batch: Batch, out: Output, unimodal: Callable[[], dict[str, Tensor]]) -> None:
        if batch.target is None:
            return
        losses = [self.task.loss(out.logits, batch.target), *unimodal().values()]
        self._val = self._val + torch.stack(losses).detach().float() * batch.size
        self._val_count += batch.size

    def val_epoch_end(self, reduce: Reduce) -> None:
        """Keep this validation epoch's mean loss per head for the next weight update."""
        self._val_losses = reduce(self._val / self._val_count, "mean") if self._val_count else None  # type: ignore[operator]
        self.reset_val()

    def train_epoch_end(self, reduce: Reduce) -> dict[str, Tensor]:
        logs = {f"blend_weight_{k}": w for k, w in zip(self.names, self.blend.detach().clone())}
        self._epochs += 1
        if self._epochs % self.config.blend_window == 0:
            self.update(reduce)
        return logs

    def update(self, reduce: Reduce) -> None:
        """Re-estimate the blending weights from this epoch's training and validation losses per head."""
        if self._val_losses is None or not self._count:
            return
        train = reduce(self._train / self._count, "mean")  # type: ignore[operator]
        val, self._val_losses = self._val_losses.to(train), None
        overfit = val - train
        previous_val, previous_overfit = self.blend_reference.to(train)
        weights = blend_weights(dict(zip(self.names, (previous_val - val).tolist())),
                                dict(zip(self.names, (overfit - previous_overfit).tolist())))
        self.blend_reference.copy_(torch.stack([val, overfit]))
        if weights is not None:
            self.blend.copy_(torch.tensor([weights[k] for k in self.names]))

    def reset_train(self) -> None:
        self._train: Tensor | float = 0.0
        self._count = 0

    def reset_val(self) -> None:
        self._val: Tensor | float = 0.0
        self._val_count = 0
