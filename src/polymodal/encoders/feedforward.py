"""MLP encoders for fixed-width inputs: tabular fields and precomputed feature vectors."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.encoders.base import ENCODERS, Encoder
from polymodal.layers import EncoderOutput, mlp


@ENCODERS.register("tabular_mlp")
class TabularMLP(Encoder):
    """Standardized numerics (with missing indicators) and category embeddings, concatenated, then an MLP.

    Args:
        n_numeric: numeric columns (derived; the input has 2x that with the indicators).
        cardinalities: categories per categorical column, unknown bucket included (derived).
        out_dim: feature width D.
        hidden: MLP width.
        embed_dim: width of each category embedding.
    """

    modalities = ("tabular",)
    derived = ("n_numeric", "cardinalities")

    def __init__(self, n_numeric: int, cardinalities: list[int], out_dim: int = 128, hidden: int = 128,
                 embed_dim: int = 16, layers: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.embeds = nn.ModuleList(nn.Embedding(c, embed_dim) for c in cardinalities)
        self.net = mlp(2 * n_numeric + embed_dim * len(cardinalities), hidden, out_dim, layers, dropout)
        self.out_dim = out_dim

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        cats = [emb(inputs["categorical"][:, i]) for i, emb in enumerate(self.embeds)]  # each (B, E)
        x = torch.cat([inputs["numeric"], *cats], dim=1)  # (B, 2K + C*E)
        return EncoderOutput(pooled=self.net(x))


@ENCODERS.register("vector_mlp")
class VectorMLP(Encoder):
    """An MLP over a precomputed feature vector.

    Args:
        in_dim: vector width (derived).
        out_dim: feature width D.
        hidden: MLP width.
        layers: linear layers.
    """

    modalities = ("vector",)
    derived = ("in_dim",)

    def __init__(self, in_dim: int, out_dim: int = 128, hidden: int = 128, layers: int = 2,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.net = mlp(in_dim, hidden, out_dim, layers, dropout)
        self.out_dim = out_dim

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        return EncoderOutput(pooled=self.net(inputs["values"]))
