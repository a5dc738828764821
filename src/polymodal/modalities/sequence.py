"""Sequence: precomputed features over time, (T, F) per record (e.g. CMU-MOSI's word vectors, COVAREP)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

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


class SequenceSpec(ModalityBase):
    type: Literal["sequence"]
    max_length: int = Field(256, ge=1, description="time steps kept per sequence")


def describe(spec: SequenceSpec, state: str) -> str:
    return (f"values (B, T, F) float32: at most {spec.max_length} steps, (value - mean) / std per feature "
            f"(mean/std: {state}), padding steps 0; mask (B, T) bool: True for real steps")


SEQUENCE = register(Modality(
    name="sequence",
    spec=SequenceSpec,
    processor="polymodal.processors.arrays:SequenceProcessor",
    encoder=Component(name="sequence_gru"),
    corruptions=(
        CorruptionPart("gaussian_noise", kernel("array_noise"), (0.10, 0.25, 0.50, 0.75, 1.00)),
        CorruptionPart("time_mask", kernel("sequence_time_mask"), (0.10, 0.20, 0.30, 0.45, 0.60)),
    ),
    server=ServerInput("numbers", {"type": ["array", "null"], "items": {"type": "array", "items": {"type": "number"}}},
                       NUMBERS_FORM),
    describe=describe,
    preprocess=Preprocess("sequence", time_axis="values"),
))
