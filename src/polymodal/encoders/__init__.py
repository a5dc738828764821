"""Encoders, registered by name; importing this package fills the registry."""

from __future__ import annotations

from polymodal.encoders import (  # noqa: F401  (registration)
    cnn,
    feedforward,
    pretrained,  # pretrained weights load only when such an encoder is built
    recurrent,
    transformer,
    video,
)
from polymodal.encoders.base import ENCODERS, Encoder
from polymodal.layers import EncoderOutput

__all__ = ["ENCODERS", "Encoder", "EncoderOutput"]
