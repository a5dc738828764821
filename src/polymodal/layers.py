"""Generic blocks shared by encoders, fusion and heads: the encoder output record, `masked_mean`, `mlp`."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn


@dataclass
class EncoderOutput:
    """What every encoder returns.

    Attributes:
        pooled: (B, D) one vector per record.
        tokens: (B, T, D) per-position features, or None.
        mask: (B, T) True where a token is real (not padding), or None.
        stats: (B, S) low-level summary statistics of the input as the encoder's first layer sees it (the CNNs:
            per-channel mean and std of the first convolution's output), outside training only; else None.
    """

    pooled: Tensor
    tokens: Tensor | None = None
    mask: Tensor | None = None
    stats: Tensor | None = None


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over axis 1 of (B, T, D) counting only positions where mask (B, T) is True."""
    w = mask.to(x.dtype)[..., None]  # (B, T, 1)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 2, dropout: float = 0.1) -> nn.Sequential:
    """`layers` linear layers with GELU and dropout between them."""
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    blocks: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        blocks.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            blocks += [nn.GELU(), nn.Dropout(dropout)]
    return nn.Sequential(*blocks)
