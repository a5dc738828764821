"""`tensor`: Tensor Fusion Network (Zadeh et al., "Tensor Fusion Network for Multimodal Sentiment Analysis",
EMNLP 2017).

Each modality is projected to a small width p, a constant 1 is appended to it, and the N-way outer product of
these (p+1)-vectors is flattened into one (p+1)^N vector, which holds every unimodal, bimodal, ..., N-modal
interaction term; an MLP maps it to the fused width. The projection keeps the product small: with N = 3 and
p = 16 it has 17^3 = 4913 entries.
Missing modality: its projected vector is replaced by zeros (NaN-safe) while its appended 1 stays, so the
product keeps the other modalities' unimodal and lower-order terms and every term involving the missing one
is zero.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from polymodal.fusion.base import FUSIONS, Fusion, FusionOutput, zero_missing
from polymodal.layers import EncoderOutput, mlp


def with_one(h: Tensor) -> Tensor:
    """Append a constant 1 to each row of (B, D)."""
    return torch.cat([h, h.new_ones(h.shape[0], 1)], dim=1)  # (B, D + 1)


def outer_flat(a: Tensor, b: Tensor) -> Tensor:
    """Per-row outer product of (B, Da) and (B, Db), flattened."""
    return torch.einsum("bi,bj->bij", a, b).flatten(1)  # (B, Da * Db)


@FUSIONS.register("tensor")
class TensorFusion(Fusion):
    """Outer product of the [projected modality, 1] vectors, then an MLP.

    Args:
        in_dims: feature width per modality (derived).
        proj_dim: width p each modality is projected to; the product has (p+1)^N entries.
        hidden: MLP width, also the fused width.
        layers: linear layers in the MLP.
        dropout: dropout inside the MLP.
    """

    def __init__(self, in_dims: Mapping[str, int], proj_dim: int = 16, hidden: int = 128, layers: int = 2,
                 dropout: float = 0.2) -> None:
        super().__init__(in_dims)
        self.proj = nn.ModuleDict({m: nn.Linear(d, proj_dim) for m, d in self.in_dims.items()})
        self.product_dim = (proj_dim + 1) ** len(self.in_dims)
        self.net = mlp(self.product_dim, hidden, hidden, layers, dropout)
        self.act = nn.GELU()
        self.out_dim = hidden

    def product(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> Tensor:
        """The flattened N-way outer product, (B, (p+1)^N)."""
        first = features[self.modalities[0]].pooled
        z = first.new_ones(first.shape[0], 1)  # (B, 1)
        for m in self.modalities:
            x = zero_missing(features[m].pooled, present[m])  # (B, D_m)
            h = zero_missing(self.proj[m](x), present[m])  # (B, p); the bias must not survive either
            z = outer_flat(z, with_one(h))  # (B, prod of (p+1) so far)
        return z

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> FusionOutput:
        return FusionOutput(fused=self.act(self.net(self.product(features, present))))
