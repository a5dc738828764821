"""Precomputed encoder outputs travelling in `Batch.features` in place of a modality's raw inputs.

A cached modality's entry is `{"pooled": (B, D), "tokens": (B, T, D), "mask": (B, T)}` (tokens and mask where the
encoder has them): the model hands them to the fusion without running that encoder.
"""

from __future__ import annotations

from torch import Tensor

from polymodal.layers import EncoderOutput


def as_output(features: dict[str, Tensor]) -> EncoderOutput:
    return EncoderOutput(pooled=features["pooled"], tokens=features.get("tokens"), mask=features.get("mask"))
