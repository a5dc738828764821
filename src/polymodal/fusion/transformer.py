"""`transformer`: early fusion by one Transformer encoder over all modalities' tokens (single stream).

The "vanilla self-attention fusion" baseline of Nagrani et al., "Attention Bottlenecks for Multimodal
Fusion" (NeurIPS 2021), in the single-stream style of VisualBERT (Li et al., arXiv 2019). Every modality's
tokens (its pooled vector as one token when the encoder has none) are projected to a common width, tagged
with a learned modality embedding, concatenated behind a learned CLS token and encoded jointly, so every
token attends to every other modality; the fused vector is the CLS output.
Missing modality: its tokens are replaced by zeros before projection and masked out as keys (with its
padding) through the key-padding mask, so no token can attend to it; the CLS token is always present, so a
record with no modality present still has one key and gives a finite output (a function of CLS alone).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from polymodal.fusion.base import FUSIONS, Fusion, FusionOutput, modality_tokens
from polymodal.layers import EncoderOutput


@FUSIONS.register("transformer")
class TransformerFusion(Fusion):
    """Single-stream Transformer over [CLS; tokens of every modality] with learned modality embeddings.

    Args:
        in_dims: feature width per modality (derived).
        hidden: model width, also the fused width (divisible by heads).
        layers: Transformer encoder layers (pre-norm).
        heads: attention heads.
        dropout: dropout inside the Transformer.
    """

    def __init__(self, in_dims: Mapping[str, int], hidden: int = 128, layers: int = 2, heads: int = 4,
                 dropout: float = 0.1) -> None:
        super().__init__(in_dims)
        self.proj = nn.ModuleDict({m: nn.Linear(d, hidden) for m, d in self.in_dims.items()})
        self.modality = nn.ParameterDict({m: nn.Parameter(torch.zeros(hidden)) for m in self.in_dims})
        self.cls = nn.Parameter(torch.zeros(1, 1, hidden))
        for p in [self.cls, *self.modality.values()]:
            nn.init.trunc_normal_(p, std=0.02)
        layer = nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=2 * hidden, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.out_dim = hidden

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> FusionOutput:
        """Returns the CLS output as `fused` and all tokens (CLS first) with their real-token mask."""
        x, mask = self._sequence(features, present)  # (B, 1 + sum T_m, hidden), (B, 1 + sum T_m)
        h = self.norm(self.blocks(x, src_key_padding_mask=~mask))  # (B, 1 + sum T_m, hidden)
        return FusionOutput(fused=h[:, 0], tokens=h, mask=mask)

    def _sequence(self, features: Mapping[str, EncoderOutput],
                  present: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        parts, masks = [], []
        for m in self.modalities:
            tokens, real = modality_tokens(features[m], present[m])  # (B, T_m, D_m), (B, T_m)
            parts.append(self.proj[m](tokens) + self.modality[m])  # (B, T_m, hidden)
            masks.append(real)
        b = parts[0].shape[0]
        cls = self.cls.expand(b, -1, -1)  # (B, 1, hidden)
        always = torch.ones(b, 1, dtype=torch.bool, device=cls.device)  # (B, 1)
        return torch.cat([cls, *parts], dim=1), torch.cat([always, *masks], dim=1)
