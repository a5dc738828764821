"""Vector: a fixed-width list of numbers per record (an embedding, precomputed features)."""

from __future__ import annotations

from typing import Literal

from polymodal.modalities.base import (
    NUMBERS_FORM,
    CorruptionPart,
    Modality,
    Preprocess,
    ServerInput,
    kernel,
    register,
)
from polymodal.schema import Component, ModalityBase


class VectorSpec(ModalityBase):
    type: Literal["vector"]


def describe(spec: VectorSpec, state: str) -> str:
    return f"values (B, F) float32: (value - mean) / std per feature (mean/std: {state})"


VECTOR = register(Modality(
    name="vector",
    spec=VectorSpec,
    processor="polymodal.processors.arrays:VectorProcessor",
    encoder=Component(name="vector_mlp"),
    corruptions=(
        CorruptionPart("gaussian_noise", kernel("array_noise"), (0.10, 0.25, 0.50, 0.75, 1.00)),
        CorruptionPart("feature_dropout", kernel("vector_dropout"), (0.10, 0.20, 0.30, 0.45, 0.60)),
    ),
    server=ServerInput("numbers", {"type": ["array", "null"], "items": {"type": "number"}}, NUMBERS_FORM),
    describe=describe,
    preprocess=Preprocess("vector"),
))
