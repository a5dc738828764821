"""`gated`: Gated Multimodal Unit (Arevalo et al., "Gated Multimodal Units for Information Fusion",
ICLR 2017 workshop), generalised from 2 to N modalities.

Each modality is mapped to h_m = tanh(W_m x_m) in a shared width; a linear map of all the (concatenated)
inputs gives one gate logit per modality, a softmax over modalities turns them into gates z_m (the paper's
sigmoid z, 1 - z is the N = 2 case), and fused = sum_m z_m h_m.
Missing modality: its input is replaced by zeros (NaN-safe) before both maps, a presence flag per modality is
fed to the gate, and its gate logit is masked out of the softmax, so its gate is exactly 0 and the remaining
gates are renormalised over the present modalities; a record with no modality present gets a zero vector.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from polymodal.fusion.base import FUSIONS, Fusion, FusionOutput, zero_missing
from polymodal.layers import EncoderOutput


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over axis 1 of (B, N) restricted to mask (B, N); rows with nothing present give zeros."""
    top = torch.where(mask, scores, torch.full_like(scores, float("-inf"))).amax(1, keepdim=True)  # (B, 1)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    shifted = torch.where(mask, scores - top, torch.zeros_like(scores))  # <= 0 where present, never overflows
    e = torch.where(mask, torch.exp(shifted), torch.zeros_like(scores))  # (B, N)
    return e / e.sum(1, keepdim=True).clamp_min(1e-12)


@FUSIONS.register("gated")
class GatedFusion(Fusion):
    """N-way Gated Multimodal Unit: softmax gates over modalities weigh tanh-projected features.

    Args:
        in_dims: feature width per modality (derived).
        hidden: width of each h_m, also the fused width.
    """

    def __init__(self, in_dims: Mapping[str, int], hidden: int = 128) -> None:
        super().__init__(in_dims)
        self.proj = nn.ModuleDict({m: nn.Linear(d, hidden) for m, d in self.in_dims.items()})
        self.gate = nn.Linear(sum(self.in_dims.values()) + len(self.in_dims), len(self.in_dims))
        self.out_dim = hidden

    def inputs(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {m: zero_missing(features[m].pooled, present[m]) for m in self.modalities}

    def gates(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> Tensor:
        """Gate z (B, N) in `modalities` order: sums to 1 over present modalities, 0 where missing."""
        xs = self.inputs(features, present)
        flags = [present[m].to(xs[m].dtype)[:, None] for m in self.modalities]
        x = torch.cat([xs[m] for m in self.modalities] + flags, dim=1)  # (B, sum D_m + N)
        mask = torch.stack([present[m] for m in self.modalities], dim=1)  # (B, N)
        return masked_softmax(self.gate(x), mask)

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> FusionOutput:
        xs = self.inputs(features, present)
        h = torch.stack([torch.tanh(self.proj[m](xs[m])) for m in self.modalities], dim=1)  # (B, N, H)
        z = self.gates(features, present)  # (B, N)
        return FusionOutput(fused=(z[..., None] * h).sum(1))  # (B, H)
