"""`cross_attention`: pairwise crossmodal Transformers (MulT).

Tsai et al., "Multimodal Transformer for Unaligned Multimodal Language Sequences" (ACL 2019). For every
target modality m and every other source s, a stack of crossmodal blocks lets m's tokens (queries) attend to
s's tokens (keys/values), with residual and feed-forward, pre-norm; the streams into m are concatenated
along features, projected back to `hidden` and refined by one self-attention layer over m's tokens, then
pooled by a masked mean over m's real tokens. The pooled targets are concatenated and projected to `hidden`.
With a single modality there are no sources and this is self-attention over that modality.
Missing modality: its tokens are replaced by zeros before projection. As a source it is masked out as keys;
a target whose sources are all missing (or all padding) keeps only the residual path (the attention
contribution is computed under a guard against all-masked softmax and then set to zero). As a target its
pooled slot is a learned placeholder, so nothing computed from it reaches the output.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from polymodal.fusion.base import FUSIONS, Fusion, FusionOutput, modality_tokens
from polymodal.layers import EncoderOutput, masked_mean


def guarded_attention(attn: nn.MultiheadAttention, q: Tensor, kv: Tensor, real: Tensor) -> Tensor:
    """Attention of q (B, Tq, D) over kv (B, Tk, D) restricted to real keys (B, Tk); zeros where none is real.

    Rows without a real key are attended unmasked (never an all -inf softmax), then their output is zeroed.
    """
    has_key = real.any(1)  # (B,)
    ignore = ~real & has_key[:, None]  # (B, Tk)
    out = attn(q, kv, kv, key_padding_mask=ignore, need_weights=False)[0]  # (B, Tq, D)
    return torch.where(has_key[:, None, None], out, torch.zeros_like(out))


class CrossmodalBlock(nn.Module):
    """Pre-norm crossmodal block: target tokens attend to source tokens, then a feed-forward, both residual.

    Args:
        hidden: model width (divisible by heads).
        heads: attention heads.
        dropout: dropout on attention weights and residual branches.
    """

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_ff = nn.LayerNorm(hidden), nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(2 * hidden, hidden))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, source: Tensor, real: Tensor) -> Tensor:
        """x (B, Tq, D) attends to source (B, Tk, D) where real (B, Tk); returns (B, Tq, D)."""
        x = x + self.drop(guarded_attention(self.attn, self.norm_q(x), self.norm_kv(source), real))
        return x + self.drop(self.ff(self.norm_ff(x)))  # (B, Tq, D)


@FUSIONS.register("cross_attention")
class CrossAttentionFusion(Fusion):
    """MulT: crossmodal Transformers for every (source -> target) pair, self-attention per target, pooled.

    Args:
        in_dims: feature width per modality (derived).
        hidden: model width, also the fused width (divisible by heads).
        layers: crossmodal blocks per (source, target) pair.
        heads: attention heads.
        dropout: dropout inside the blocks.
    """

    def __init__(self, in_dims: Mapping[str, int], hidden: int = 128, layers: int = 1, heads: int = 4,
                 dropout: float = 0.1) -> None:
        super().__init__(in_dims)
        n = len(self.in_dims)
        self.proj = nn.ModuleDict({m: nn.Linear(d, hidden) for m, d in self.in_dims.items()})
        self.cross = nn.ModuleDict({m: nn.ModuleDict({s: self._blocks(hidden, layers, heads, dropout)
                                                      for s in self.in_dims if s != m}) for m in self.in_dims})
        self.merge = nn.ModuleDict({m: nn.Linear((n - 1) * hidden, hidden) for m in self.in_dims} if n > 1 else {})
        self.self_attn = nn.ModuleDict({m: nn.TransformerEncoderLayer(
            hidden, heads, dim_feedforward=2 * hidden, dropout=dropout, activation="gelu", batch_first=True,
            norm_first=True) for m in self.in_dims})
        self.norm = nn.LayerNorm(hidden)
        self.placeholder = nn.ParameterDict({m: nn.Parameter(torch.zeros(hidden)) for m in self.in_dims})
        self.out = nn.Linear(n * hidden, hidden)
        self.out_dim = hidden

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> FusionOutput:
        tokens = {m: modality_tokens(features[m], present[m]) for m in self.modalities}
        x = {m: (self.proj[m](t), real) for m, (t, real) in tokens.items()}  # each (B, T_m, hidden), (B, T_m)
        pooled = [self._target(m, x) for m in self.modalities]  # each (B, hidden)
        return FusionOutput(fused=self.out(torch.cat(pooled, dim=1)))  # (B, hidden)

    @staticmethod
    def _blocks(hidden: int, layers: int, heads: int, dropout: float) -> nn.ModuleList:
        return nn.ModuleList([CrossmodalBlock(hidden, heads, dropout) for _ in range(layers)])

    def _target(self, m: str, x: Mapping[str, tuple[Tensor, Tensor]]) -> Tensor:
        """(B, hidden) pooled representation of target m attended to every source; placeholder where m is absent."""
        z, real = x[m]  # (B, T_m, hidden), (B, T_m)
        streams = [self._stream(s, m, x) for s in self.modalities if s != m]  # each (B, T_m, hidden)
        if streams:
            z = self.merge[m](torch.cat(streams, dim=-1))  # (B, T_m, hidden)
        has = real.any(1)  # (B,)
        z = self.self_attn[m](z, src_key_padding_mask=~real & has[:, None])  # (B, T_m, hidden)
        pooled = masked_mean(self.norm(z), real)  # (B, hidden)
        return torch.where(has[:, None], pooled, self.placeholder[m].expand_as(pooled))

    def _stream(self, s: str, m: str, x: Mapping[str, tuple[Tensor, Tensor]]) -> Tensor:
        """(B, T_m, hidden) target m's tokens after the crossmodal blocks from source s."""
        z, (source, real) = x[m][0], x[s]
        for block in self.cross[m][s]:
            z = block(z, source, real)  # (B, T_m, hidden)
        return z
