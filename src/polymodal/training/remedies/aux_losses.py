"""`aux_losses`: loss = task loss + aux_weight * sum_m L_m, with L_m the task loss of modality m's unimodal
prediction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from polymodal.model import MultimodalModel
from polymodal.training.remedies.base import REMEDIES, Remedy


@REMEDIES.register("aux_losses")
class AuxLosses(Remedy):
    """Adds every modality's unimodal loss, weighted by `aux_weight`, to the multimodal loss."""

    unimodal = True

    def loss(self, model: MultimodalModel, heads: nn.Module, task_loss: Tensor, others: Sequence[Tensor],
             unimodal: Mapping[str, Tensor]) -> Tensor:
        auxiliary = self.config.aux_weight * torch.stack([*unimodal.values()]).sum()
        return torch.stack([task_loss, *others, auxiliary]).sum()
