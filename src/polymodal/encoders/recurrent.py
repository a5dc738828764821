"""Bidirectional GRU encoders: over token embeddings (text) or projected feature steps (sequence)."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from polymodal.encoders.base import ENCODERS, Encoder
from polymodal.layers import EncoderOutput, masked_mean


class BiGRU(nn.Module):
    """(B, T, E) + mask -> (B, T, D) with D = out_dim (two directions of out_dim/2)."""

    def __init__(self, in_dim: int, out_dim: int, layers: int, dropout: float) -> None:
        super().__init__()
        if out_dim % 2:
            raise ValueError(f"out_dim must be even for a bidirectional GRU, got {out_dim}")
        self.gru = nn.GRU(in_dim, out_dim // 2, num_layers=layers, batch_first=True, bidirectional=True,
                          dropout=dropout if layers > 1 else 0.0)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, T, D)
        return out


class _GRUEncoder(Encoder):
    def __init__(self, embed: nn.Module, embed_dim: int, out_dim: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.embed = embed
        self.rnn = BiGRU(embed_dim, out_dim, layers, dropout)
        self.drop = nn.Dropout(dropout)
        self.out_dim = out_dim

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        key = "ids" if "ids" in inputs else "values"
        mask = inputs["mask"]  # (B, T)
        tokens = self.rnn(self.drop(self.embed(inputs[key])), mask)  # (B, T, D)
        return EncoderOutput(pooled=masked_mean(tokens, mask), tokens=tokens, mask=mask)


@ENCODERS.register("text_gru")
class TextGRU(_GRUEncoder):
    """Token embeddings + bidirectional GRU; pooled by masked mean.

    Args:
        vocab_size: tokenizer vocabulary (derived).
        out_dim: feature width D (even).
        embed_dim: token embedding width.
        layers: GRU layers.
    """

    modalities = ("text",)
    derived = ("vocab_size",)

    def __init__(self, vocab_size: int, out_dim: int = 128, embed_dim: int = 64, layers: int = 1,
                 dropout: float = 0.1) -> None:
        super().__init__(nn.Embedding(vocab_size, embed_dim, padding_idx=0), embed_dim, out_dim, layers, dropout)


@ENCODERS.register("sequence_gru")
class SequenceGRU(_GRUEncoder):
    """Linear projection of each step + bidirectional GRU; pooled by masked mean.

    Args:
        in_dim: features per step (derived).
        out_dim: feature width D (even).
        hidden: projection width.
        layers: GRU layers.
    """

    modalities = ("sequence",)
    derived = ("in_dim",)

    def __init__(self, in_dim: int, out_dim: int = 128, hidden: int = 64, layers: int = 1,
                 dropout: float = 0.1) -> None:
        super().__init__(nn.Linear(in_dim, hidden), hidden, out_dim, layers, dropout)
