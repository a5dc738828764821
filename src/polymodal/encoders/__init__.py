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

DEFAULT_ENCODERS = {
    "image": "image_cnn",
    "text": "text_gru",
    "audio": "audio_cnn",
    "tabular": "tabular_mlp",
    "vector": "vector_mlp",
    "sequence": "sequence_gru",
    "video": "video_cnn_pool",
}


def default_encoder(modality_type: str) -> str:
    return DEFAULT_ENCODERS[modality_type]


__all__ = ["ENCODERS", "Encoder", "EncoderOutput", "default_encoder"]
