"""Processors, one file per modality type; which class serves a type is that type's `polymodal.modalities` entry."""

from __future__ import annotations

from typing import Any

from polymodal.modalities import modality
from polymodal.processors.base import Processor


def build_processor(spec: Any, field: str) -> Processor:
    """The processor of a modality spec's type, reading column `field`."""
    cls: type[Processor] = modality(spec.type).processor_class()
    return cls(spec, field)


__all__ = ["Processor", "build_processor"]
