"""`bottleneck`: multimodal fusion through a few shared attention-bottleneck tokens (MBT).

Nagrani et al., "Attention Bottlenecks for Multimodal Fusion" (NeurIPS 2021). Each modality has its own
Transformer layers over [its CLS token; its tokens; n_bottleneck shared bottleneck tokens]; after every layer
the bottleneck tokens become the mean of the modalities' updated copies, so cross-modal information has to
pass through the bottleneck. The fused vector is the mean of the modalities' CLS outputs.
Missing modality: its tokens are replaced by zeros before projection, and its copy of the bottleneck tokens
is left out of the mean (so it cannot reach any other modality) as is its CLS output; when no modality is
present the bottleneck tokens keep their learned values and the fused vector is their mean.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from polymodal.fusion.base import FUSIONS, Fusion, FusionOutput, modality_tokens
from polymodal.layers import EncoderOutput


def mean_over_present(x: Tensor, mask: Tensor, fallback: Tensor) -> Tensor:
    """Mean over axis 1 of x (B, N, ...) where mask (B, N) is True; `fallback` (B, ...) for rows with none."""
    keep = mask.view(*mask.shape, *([1] * (x.dim() - 2)))  # (B, N, 1, ...)
    total = torch.where(keep, x, torch.zeros_like(x)).sum(1)  # (B, ...)
    count = keep.sum(1).clamp_min(1).to(x.dtype)  # (B, 1, ...)
    has = keep.any(1)  # (B, 1, ...)
    return torch.where(has, total / count, fallback)


@FUSIONS.register("bottleneck")
class BottleneckFusion(Fusion):
    """Per-modality Transformers exchanging information only through shared bottleneck tokens.

    Args:
        in_dims: feature width per modality (derived).
        hidden: model width, also the fused width (divisible by heads).
        layers: Transformer layers per modality, each followed by a bottleneck exchange.
        heads: attention heads.
        n_bottleneck: number of shared bottleneck tokens.
        dropout: dropout inside the Transformer layers.
    """

    def __init__(self, in_dims: Mapping[str, int], hidden: int = 128, layers: int = 2, heads: int = 4,
                 n_bottleneck: int = 4, dropout: float = 0.1) -> None:
        super().__init__(in_dims)
        self.proj = nn.ModuleDict({m: nn.Linear(d, hidden) for m, d in self.in_dims.items()})
        self.cls = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, 1, hidden)) for m in self.in_dims})
        self.bottleneck = nn.Parameter(torch.zeros(1, n_bottleneck, hidden))
        for p in [self.bottleneck, *self.cls.values()]:
            nn.init.trunc_normal_(p, std=0.02)
        self.layers = nn.ModuleList([nn.ModuleDict({m: nn.TransformerEncoderLayer(
            hidden, heads, dim_feedforward=2 * hidden, dropout=dropout, activation="gelu", batch_first=True,
            norm_first=True) for m in self.in_dims}) for _ in range(layers)])
        self.norm = nn.LayerNorm(hidden)
        self.out_dim = hidden

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> FusionOutput:
        """Returns the mean present CLS output as `fused` and the final bottleneck tokens (all real)."""
        x = {m: self._embed(m, features[m], present[m]) for m in self.modalities}  # (B, 1 + T_m, hidden), mask
        mask = torch.stack([present[m].bool() for m in self.modalities], dim=1)  # (B, N)
        b = mask.shape[0]
        z = self.bottleneck.expand(b, -1, -1)  # (B, K, hidden)
        for layer in self.layers:
            x, z = self._exchange(layer, x, z, mask)
        cls = torch.stack([self.norm(x[m][0][:, 0]) for m in self.modalities], dim=1)  # (B, N, hidden)
        z = self.norm(z)  # (B, K, hidden)
        fused = mean_over_present(cls, mask, z.mean(1))  # (B, hidden)
        return FusionOutput(fused=fused, tokens=z, mask=mask.new_ones(z.shape[:2]))

    def _embed(self, m: str, out: EncoderOutput, present: Tensor) -> tuple[Tensor, Tensor]:
        """[CLS; projected tokens] (B, 1 + T_m, hidden) of modality m and its (B, 1 + T_m) real mask."""
        tokens, real = modality_tokens(out, present)  # (B, T_m, D_m), (B, T_m)
        cls = self.cls[m].expand(tokens.shape[0], -1, -1)  # (B, 1, hidden)
        always = torch.ones(real.shape[0], 1, dtype=torch.bool, device=real.device)  # (B, 1)
        return torch.cat([cls, self.proj[m](tokens)], dim=1), torch.cat([always, real], dim=1)

    def _exchange(self, layer: nn.ModuleDict, x: dict[str, tuple[Tensor, Tensor]], z: Tensor,
                  mask: Tensor) -> tuple[dict[str, tuple[Tensor, Tensor]], Tensor]:
        """One layer: each modality attends over [own tokens; bottleneck]; bottleneck = mean of present copies."""
        k, new, copies = z.shape[1], {}, []
        for m in self.modalities:
            h, real = x[m]  # (B, 1 + T_m, hidden), (B, 1 + T_m)
            full = torch.cat([real, real.new_ones(real.shape[0], k)], dim=1)  # (B, 1 + T_m + K)
            out = layer[m](torch.cat([h, z], dim=1), src_key_padding_mask=~full)  # (B, 1 + T_m + K, hidden)
            new[m] = (out[:, :-k], real)
            copies.append(out[:, -k:])  # (B, K, hidden)
        return new, mean_over_present(torch.stack(copies, dim=1), mask, z)  # (B, K, hidden)
