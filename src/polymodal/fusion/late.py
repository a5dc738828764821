"""`late`: decision-level fusion. One branch per modality, combined by mean or learned weights.

Each modality gets its own MLP into a shared decision space; the task head's final linear layer is applied
to their weighted mean, which equals the weighted mean of per-modality predictions (a linear head commutes
with averaging). The model also reports each branch's own prediction.
Missing modality: its weight is set to zero and the remaining weights are renormalized; a record with no
modality present gets a zero vector.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor, nn

from polymodal.fusion.base import FUSIONS, Fusion, FusionOutput
from polymodal.layers import EncoderOutput, mlp


@FUSIONS.register("late")
class LateFusion(Fusion):
    """Per-modality MLP branches averaged by presence-masked (learned) weights.

    Args:
        in_dims: feature width per modality (derived).
        hidden: branch width, also the fused width.
        weights: "mean" (equal) or "learned" (a softmax over one learned score per modality).
    """

    def __init__(self, in_dims: Mapping[str, int], hidden: int = 128, layers: int = 2, dropout: float = 0.2,
                 weights: Literal["mean", "learned"] = "mean") -> None:
        super().__init__(in_dims)
        if weights not in ("mean", "learned"):
            raise ValueError(f"late fusion weights must be 'mean' or 'learned', got {weights!r}")
        self.branches = nn.ModuleDict({m: mlp(d, hidden, hidden, layers, dropout) for m, d in self.in_dims.items()})
        self.scores = nn.Parameter(torch.zeros(len(self.in_dims)), requires_grad=weights == "learned")
        self.out_dim = hidden

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> FusionOutput:
        per = {m: self.branches[m](features[m].pooled) for m in self.modalities}  # each (B, H)
        mask = torch.stack([present[m] for m in self.modalities], dim=1)  # (B, N)
        e = torch.exp(self.scores - self.scores.max())[None] * mask  # (B, N)
        w = e / e.sum(1, keepdim=True).clamp_min(1e-12)  # softmax over present modalities; none -> 0
        stacked = torch.stack([per[m] for m in self.modalities], dim=1)  # (B, N, H)
        stacked = torch.where(mask[..., None], stacked, torch.zeros_like(stacked))
        return FusionOutput(fused=(w[..., None] * stacked).sum(1), per_modality=per)
