"""`low_rank`: Low-rank Multimodal Fusion (Liu et al., "Efficient Low-rank Multimodal Fusion with
Modality-Specific Factors", ACL 2018).

The tensor-fusion weight over the outer product of the [h_m, 1] vectors is factorised into `rank`
modality-specific factors W_m of shape (rank, D_m + 1, out): fused = sum_r w_r * prod_m ([h_m, 1] @ W_m[r]) + b,
computed without ever forming the outer product, so the cost is linear in the number of modalities.
Missing modality: h_m is replaced by zeros (NaN-safe) while its appended 1 stays, so its factor contributes
only its constant row W_m[r, -1] -- the same semantics as `tensor` fusion, at low-rank cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce

import torch
from torch import Tensor, nn

from polymodal.fusion.base import FUSIONS, Fusion, FusionOutput, zero_missing
from polymodal.layers import EncoderOutput


def factor(d: int, rank: int, out: int) -> nn.Parameter:
    """A (rank, d + 1, out) factor scaled so that [h, 1] @ W has unit-order entries for unit-order h."""
    return nn.Parameter(torch.randn(rank, d + 1, out) / (d + 1) ** 0.5)


@FUSIONS.register("low_rank")
class LowRankFusion(Fusion):
    """Low-rank factorised tensor fusion with registered, trainable modality factors.

    Args:
        in_dims: feature width per modality (derived).
        rank: number of rank-one terms r.
        hidden: output width, also the fused width.
    """

    def __init__(self, in_dims: Mapping[str, int], rank: int = 4, hidden: int = 128) -> None:
        super().__init__(in_dims)
        self.factors = nn.ParameterDict({m: factor(d, rank, hidden) for m, d in self.in_dims.items()})
        self.rank_weights = nn.Parameter(torch.full((rank,), rank ** -0.5))
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.out_dim = hidden

    def project(self, m: str, x: Tensor, present: Tensor) -> Tensor:
        """[h_m, 1] @ W_m for every rank, with h_m zeroed where the modality is missing."""
        h = zero_missing(x, present)  # (B, D_m)
        h1 = torch.cat([h, h.new_ones(h.shape[0], 1)], dim=1)  # (B, D_m + 1)
        return torch.einsum("bd,rdo->rbo", h1, self.factors[m])  # (R, B, out)

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> FusionOutput:
        parts = [self.project(m, features[m].pooled, present[m]) for m in self.modalities]  # each (R, B, out)
        prod = reduce(torch.mul, parts)  # (R, B, out)
        fused = torch.einsum("r,rbo->bo", self.rank_weights, prod) + self.bias  # (B, out)
        return FusionOutput(fused=fused)
