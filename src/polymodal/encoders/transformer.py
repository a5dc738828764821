"""Small Transformer encoders (pre-norm, learned positions) over text tokens or feature sequences."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.encoders.base import ENCODERS, Encoder
from polymodal.layers import EncoderOutput, masked_mean


def transformer_stack(width: int, heads: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    """Pre-norm GELU Transformer layers over (B, T, width) tokens, shared by the sequence and video encoders."""
    layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class PositionalTransformer(Encoder):
    """Base of the encoders that add learned positions to (B, T, D) tokens, run `transformer_stack` over them and
    pool by masked mean (text, sequence and video Transformers). Subclasses call `init_stack` after building their
    embedding (so parameters are created in that order) and `contextualize` in `forward`."""

    def init_stack(self, out_dim: int, layers: int, heads: int, max_length: int, dropout: float) -> None:
        self.pos = nn.Parameter(torch.zeros(1, max_length, out_dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = transformer_stack(out_dim, heads, layers, dropout)
        self.norm = nn.LayerNorm(out_dim)
        self.out_dim = out_dim

    def contextualize(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        """Tokens x (B, T, D) with their padding mask (B, T), T <= max_length -> contextual tokens and their mean."""
        tokens = self.norm(self.blocks(x + self.pos[:, : x.shape[1]], src_key_padding_mask=~mask))  # (B, T, D)
        return EncoderOutput(pooled=masked_mean(tokens, mask), tokens=tokens, mask=mask)


class _TransformerEncoder(PositionalTransformer):
    def __init__(self, embed: nn.Module, out_dim: int, layers: int, heads: int, max_length: int,
                 dropout: float) -> None:
        super().__init__()
        self.embed = embed
        self.init_stack(out_dim, layers, heads, max_length, dropout)

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        key = "ids" if "ids" in inputs else "values"
        mask = inputs["mask"][:, : self.pos.shape[1]]  # (B, T)
        return self.contextualize(self.embed(inputs[key][:, : self.pos.shape[1]]), mask)


@ENCODERS.register("text_transformer")
class TextTransformer(_TransformerEncoder):
    """Token embeddings + Transformer encoder; pooled by masked mean.

    Args:
        vocab_size: tokenizer vocabulary (derived).
        out_dim: model width D (divisible by heads).
        layers, heads: Transformer depth and attention heads.
        max_length: longest sequence handled (longer input is cut).
    """

    modalities = ("text",)
    derived = ("vocab_size",)

    def __init__(self, vocab_size: int, out_dim: int = 128, layers: int = 2, heads: int = 4,
                 max_length: int = 512, dropout: float = 0.1) -> None:
        super().__init__(nn.Embedding(vocab_size, out_dim, padding_idx=0), out_dim, layers, heads, max_length,
                         dropout)


@ENCODERS.register("sequence_transformer")
class SequenceTransformer(_TransformerEncoder):
    """Linear projection of each step + Transformer encoder; pooled by masked mean.

    Args:
        in_dim: features per step (derived).
        out_dim: model width D (divisible by heads).
        layers, heads: Transformer depth and attention heads.
        max_length: longest sequence handled (longer input is cut).
    """

    modalities = ("sequence",)
    derived = ("in_dim",)

    def __init__(self, in_dim: int, out_dim: int = 128, layers: int = 2, heads: int = 4,
                 max_length: int = 1024, dropout: float = 0.1) -> None:
        super().__init__(nn.Linear(in_dim, out_dim), out_dim, layers, heads, max_length, dropout)
