"""`bilinear`: Multi-modal Factorized Bilinear pooling, MFB (Yu et al., "Multi-modal Factorized Bilinear
Pooling with Co-Attention Learning for Visual Question Answering", ICCV 2017), generalised to N modalities.

Each modality is projected to k*o features, the projections are multiplied elementwise across modalities
(a rank-k factorisation of an N-linear map), followed by dropout, sum-pooling over each group of k to o
features, power normalisation sign(x) * sqrt(|x| + eps) and L2 normalisation, so the fused vector has unit norm.
Missing modality: it contributes the multiplicative identity (a vector of ones) instead of its projection,
and its input is zeroed before projecting (NaN-safe in both passes); a record with no modality present gets
the normalised all-ones product, a constant.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.fusion.base import FUSIONS, Fusion, FusionOutput, zero_missing
from polymodal.layers import EncoderOutput


def power_normalize(x: Tensor, eps: float = 1e-8) -> Tensor:
    """sign(x) * sqrt(|x| + eps): finite gradient everywhere (0 at x = 0, at most 1 / (2 sqrt(eps)))."""
    return torch.sign(x) * torch.sqrt(x.abs() + eps)


@FUSIONS.register("bilinear")
class BilinearFusion(Fusion):
    """N-way factorised bilinear pooling (MFB) with power and L2 normalisation.

    Args:
        in_dims: feature width per modality (derived).
        factor: k, the rank of the factorisation (features summed per output).
        hidden: o, the fused width.
        dropout: dropout on the k*o product.
    """

    def __init__(self, in_dims: Mapping[str, int], factor: int = 4, hidden: int = 128, dropout: float = 0.1) -> None:
        super().__init__(in_dims)
        self.factor = factor
        self.proj = nn.ModuleDict({m: nn.Linear(d, factor * hidden) for m, d in self.in_dims.items()})
        self.drop = nn.Dropout(dropout)
        self.out_dim = hidden

    def project(self, m: str, x: Tensor, present: Tensor) -> Tensor:
        """The modality's k*o projection, or ones where it is missing."""
        p = self.proj[m](zero_missing(x, present))  # (B, k*o)
        return torch.where(present[:, None], p, torch.ones_like(p))

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> FusionOutput:
        parts = [self.project(m, features[m].pooled, present[m]) for m in self.modalities]  # each (B, k*o)
        z = self.drop(reduce(torch.mul, parts))  # (B, k*o)
        z = z.view(z.shape[0], self.out_dim, self.factor).sum(2)  # (B, o)
        return FusionOutput(fused=F.normalize(power_normalize(z), dim=1, eps=1e-12))
