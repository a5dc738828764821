"""`concat`: the multimodal deep network. Concatenate modality features, then an MLP.

Missing modality: its features are replaced by zeros and a presence indicator per modality is appended, so
the MLP sees that it is absent and its content cannot reach the output.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from polymodal.fusion.base import FUSIONS, Fusion, FusionOutput, zero_missing
from polymodal.layers import EncoderOutput, mlp


@FUSIONS.register("concat")
class ConcatFusion(Fusion):
    """Concatenate-then-MLP.

    Args:
        in_dims: feature width per modality (derived).
        hidden: MLP width, also the fused width.
        layers: linear layers in the MLP.
    """

    def __init__(self, in_dims: Mapping[str, int], hidden: int = 256, layers: int = 2, dropout: float = 0.2) -> None:
        super().__init__(in_dims)
        width = sum(self.in_dims.values()) + len(self.in_dims)
        self.net = mlp(width, hidden, hidden, layers, dropout)
        self.act = torch.nn.GELU()
        self.out_dim = hidden

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> FusionOutput:
        parts = [zero_missing(features[m].pooled, present[m]) for m in self.modalities]
        flags = [present[m].to(parts[0].dtype)[:, None] for m in self.modalities]
        x = torch.cat(parts + flags, dim=1)  # (B, sum D_m + N)
        return FusionOutput(fused=self.act(self.net(x)))
