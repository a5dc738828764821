"""Precomputed encoder outputs travelling in a Batch in place of a modality's raw inputs.

A cached modality's inputs are `{"pooled": (B, D), "tokens": (B, T, D), "mask": (B, T)}` (tokens and mask where
the encoder has them): processors leave them as they are and the model hands them to the fusion directly.
"""

from __future__ import annotations

from torch import Tensor

from polymodal.layers import EncoderOutput

PRECOMPUTED = "pooled"


def is_precomputed(inputs: dict[str, Tensor]) -> bool:
    return PRECOMPUTED in inputs


def as_output(inputs: dict[str, Tensor]) -> EncoderOutput:
    return EncoderOutput(pooled=inputs[PRECOMPUTED], tokens=inputs.get("tokens"), mask=inputs.get("mask"))
