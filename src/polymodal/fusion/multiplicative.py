"""`multiplicative`: multiplicative interactions (Jayakumar et al., "Multiplicative Interactions and Where to
Find Them", ICLR 2020), in a symmetric form over all modalities.

The paper's layer is f(x, z) = W(z) x + b(z) with W(z) = z^T W + V and b(z) = z^T U + b for a 3-tensor W.
Here x = z = the concatenation of every modality plus one presence flag per modality, and W is factorised
with rank r: W[i, j, o] = sum_r A[r, i] B[r, j] C[o, r]. Exactly:
fused = C ((A x) * (B x)) + L x + c, where L x + c collects the linear terms V x + U z + b.
This is a rank-r quadratic form in x, so it contains every pairwise (within- and cross-modality) product.
Missing modality: its features are replaced by zeros (NaN-safe) and its flag is 0, so its content reaches
neither the linear nor the multiplicative term.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from polymodal.fusion.base import FUSIONS, Fusion, FusionOutput, zero_missing
from polymodal.layers import EncoderOutput


@FUSIONS.register("multiplicative")
class MultiplicativeFusion(Fusion):
    """Rank-r multiplicative interaction layer over the concatenated modalities.

    Args:
        in_dims: feature width per modality (derived).
        rank: r, the rank of the factorised 3-tensor W.
        hidden: output width, also the fused width.
    """

    def __init__(self, in_dims: Mapping[str, int], rank: int = 16, hidden: int = 128) -> None:
        super().__init__(in_dims)
        width = sum(self.in_dims.values()) + len(self.in_dims)
        self.a = nn.Linear(width, rank, bias=False)
        self.b = nn.Linear(width, rank, bias=False)
        self.c = nn.Linear(rank, hidden, bias=False)
        self.linear = nn.Linear(width, hidden)
        self.out_dim = hidden

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> FusionOutput:
        parts = [zero_missing(features[m].pooled, present[m]) for m in self.modalities]
        flags = [present[m].to(parts[0].dtype)[:, None] for m in self.modalities]
        x = torch.cat(parts + flags, dim=1)  # (B, sum D_m + N)
        fused = self.c(self.a(x) * self.b(x)) + self.linear(x)  # (B, H)
        return FusionOutput(fused=fused)
