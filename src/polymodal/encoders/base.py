"""Encoder contract: `out_dim`; forward(inputs) -> pooled (B, D) and, where natural, tokens (B, T, D) + mask."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from polymodal.layers import EncoderOutput
from polymodal.registry import Registry


class Encoder(nn.Module):
    """Base class: subclasses declare which modality types they take and which constructor arguments are
    derived from the fitted processor (`derived`); every other argument is a user option."""

    modalities: ClassVar[tuple[str, ...]]
    derived: ClassVar[tuple[str, ...]]
    out_dim: int

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:  # pragma: no cover - abstract
        raise NotImplementedError


ENCODERS: Registry[Encoder] = Registry("encoder")
