"""Contrastive alignment between modality pairs: symmetric InfoNCE with a learnable temperature (CLIP)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.objectives.base import OBJECTIVES, Objective

if TYPE_CHECKING:
    from polymodal.data.batch import Batch
    from polymodal.output import Output


@OBJECTIVES.register("contrastive")
class Contrastive(Objective):
    """Projects each modality's pooled features into one embedding space and aligns paired records.

    For every pair (a, b), over the records where both are present (pairs with fewer than 2 are skipped), the
    loss is the mean of the cross-entropies of `scale * z_a @ z_b.T` over rows and over columns, with the
    matching record as the target; the result is averaged over pairs.

    Args:
        in_dims: pooled encoder width per modality (derived).
        fused_dim: fused width (derived, unused).
        embed_dim: width E of the shared embedding space.
        temperature: initial temperature; the logit scale 1/temperature is learned and clamped at 100.
    """

    def __init__(self, in_dims: Mapping[str, int], fused_dim: int, embed_dim: int = 128,
                 temperature: float = 0.07) -> None:
        super().__init__(in_dims, fused_dim)
        self.proj = nn.ModuleDict({m: nn.Linear(d, embed_dim) for m, d in in_dims.items()})
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        self.embed_dim = embed_dim

    @property
    def scale(self) -> Tensor:
        return self.logit_scale.clamp(max=math.log(100.0)).exp()

    def embed(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """L2-normalised (B, E) embedding for each modality in `features` (pooled (B, D_m) encoder features)."""
        return {m: F.normalize(self.proj[m](x), dim=1) for m, x in features.items()}

    def forward(self, model: Callable[[Batch], Output], batch: Batch, out: Output) -> Tensor:
        z = self.embed(out.features)
        losses = []
        for a, b in self.pairs():
            both = batch.present[a] & batch.present[b]  # (B,)
            if int(both.sum()) >= 2:
                losses.append(symmetric_info_nce(z[a][both], z[b][both], self.scale))
        return torch.stack(losses).mean() if losses else self.zero()


def symmetric_info_nce(za: Tensor, zb: Tensor, scale: Tensor) -> Tensor:
    """Mean of row-wise and column-wise cross-entropy of `scale * za @ zb.T`; record i matches record i."""
    logits = scale * za @ zb.T  # (N, N)
    target = torch.arange(za.shape[0], device=za.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
