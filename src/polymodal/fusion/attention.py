"""`attention`: attention-weighted sum of modality embeddings.

After Hori et al., "Attention-Based Multimodal Fusion for Video Description" (ICCV 2017). Each modality's
pooled feature is projected to a common width, scored by a small MLP (tanh, then linear to one number), and
the fused vector is the softmax-weighted sum of the projections, so the model learns per record how much to
trust each modality.
Missing modality: its feature is replaced by zeros before projection, its score is excluded from the softmax
(weight exactly 0, the present modalities' weights sum to 1); a record with no modality present gets a zero
vector.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from polymodal.fusion.base import FUSIONS, Fusion, FusionOutput, zero_missing
from polymodal.layers import EncoderOutput


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax of (B, N) scores over the entries where mask (B, N) is True; rows with none True give zeros."""
    scores = torch.where(mask, scores, torch.full_like(scores, float("-inf")))  # (B, N)
    scores = torch.where(mask.any(1, keepdim=True), scores, torch.zeros_like(scores))  # no all -inf row
    return torch.where(mask, torch.softmax(scores, dim=1), torch.zeros_like(scores))


@FUSIONS.register("attention")
class AttentionFusion(Fusion):
    """Softmax-weighted sum of projected modality features, weights from a tanh scoring MLP.

    Args:
        in_dims: feature width per modality (derived).
        hidden: common projection width, also the fused width.
        score_hidden: width of the scoring MLP.
    """

    def __init__(self, in_dims: Mapping[str, int], hidden: int = 128, score_hidden: int = 64) -> None:
        super().__init__(in_dims)
        self.proj = nn.ModuleDict({m: nn.Linear(d, hidden) for m, d in self.in_dims.items()})
        self.score = nn.Sequential(nn.Linear(hidden, score_hidden), nn.Tanh(), nn.Linear(score_hidden, 1))
        self.out_dim = hidden

    def embed(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> Tensor:
        """(B, N, hidden) projected features, zeros for missing modalities."""
        h = [zero_missing(self.proj[m](zero_missing(features[m].pooled, present[m])), present[m])
             for m in self.modalities]
        return torch.stack(h, dim=1)  # (B, N, hidden)

    def weights(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> Tensor:
        """(B, N) attention weights in `modalities` order: sum to 1 over present modalities, 0 for missing."""
        return self._weights(self.embed(features, present), self._mask(present))

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> FusionOutput:
        h = self.embed(features, present)  # (B, N, hidden)
        w = self._weights(h, self._mask(present))  # (B, N)
        return FusionOutput(fused=(w[..., None] * h).sum(1))  # (B, hidden)

    def _mask(self, present: Mapping[str, Tensor]) -> Tensor:
        return torch.stack([present[m].bool() for m in self.modalities], dim=1)  # (B, N)

    def _weights(self, h: Tensor, mask: Tensor) -> Tensor:
        return masked_softmax(self.score(h).squeeze(-1), mask)  # (B, N)
