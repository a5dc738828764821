"""`film`: Feature-wise Linear Modulation (Perez et al., "FiLM: Visual Reasoning with a General Conditioning
Layer", AAAI 2018).

One target modality is modulated feature-wise by a scale gamma and a shift beta predicted by a linear map of
the other (conditioning) modalities, concatenated with their presence flags: fused = MLP(gamma * x_target +
beta). gamma is predicted as 1 + delta (the residual form the paper recommends), so an untrained or
uninformed conditioner is close to the identity. With one modality only, it reduces to an MLP.
Missing modality: a missing conditioning modality is replaced by zeros (NaN-safe) with its flag 0; if every
conditioning modality is missing, gamma = 1 and beta = 0 exactly (identity). A missing target is replaced by
a learned placeholder vector.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from polymodal.fusion.base import FUSIONS, Fusion, FusionOutput, zero_missing
from polymodal.layers import EncoderOutput, mlp


@FUSIONS.register("film")
class FiLMFusion(Fusion):
    """Modulate one modality's features by gamma/beta predicted from the others, then an MLP.

    Args:
        in_dims: feature width per modality (derived).
        target: the modality that is modulated; default: the first in `in_dims`.
        hidden: MLP width, also the fused width.
        layers: linear layers in the MLP.
        dropout: dropout inside the MLP.
    """

    def __init__(self, in_dims: Mapping[str, int], target: str | None = None, hidden: int = 128, layers: int = 2,
                 dropout: float = 0.2) -> None:
        super().__init__(in_dims)
        self.target = target if target is not None else self.modalities[0]
        if self.target not in self.in_dims:
            raise ValueError(f"film target {self.target!r} is not a modality; modalities: {self.modalities}")
        self.conditions = [m for m in self.modalities if m != self.target]
        d = self.in_dims[self.target]
        width = sum(self.in_dims[m] for m in self.conditions) + len(self.conditions)
        self.film = nn.Linear(width, 2 * d) if self.conditions else None
        self.placeholder = nn.Parameter(torch.zeros(d))
        self.net = mlp(d, hidden, hidden, layers, dropout)
        self.act = nn.GELU()
        self.out_dim = hidden

    def modulation(self, features: Mapping[str, EncoderOutput],
                   present: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(gamma, beta), each (B, D_target); (1, 0) where no conditioning modality is present."""
        x = features[self.target].pooled
        if self.film is None:
            return torch.ones_like(x), torch.zeros_like(x)
        parts = [zero_missing(features[m].pooled, present[m]) for m in self.conditions]
        flags = [present[m].to(x.dtype)[:, None] for m in self.conditions]
        delta, beta = self.film(torch.cat(parts + flags, dim=1)).chunk(2, dim=1)  # (B, D_t) each
        any_present = torch.stack([present[m] for m in self.conditions], dim=1).any(1)  # (B,)
        return 1 + zero_missing(delta, any_present), zero_missing(beta, any_present)

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> FusionOutput:
        x = features[self.target].pooled  # (B, D_t)
        keep = present[self.target][:, None]  # (B, 1)
        x = torch.where(keep, x, self.placeholder.to(x.dtype).expand_as(x))  # (B, D_t)
        gamma, beta = self.modulation(features, present)
        return FusionOutput(fused=self.act(self.net(gamma * x + beta)))
