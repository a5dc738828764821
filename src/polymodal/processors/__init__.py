"""Processors by modality type."""

from __future__ import annotations

from typing import Any

from polymodal.processors.arrays import SequenceProcessor, VectorProcessor
from polymodal.processors.audio import AudioProcessor
from polymodal.processors.base import Processor
from polymodal.processors.image import ImageProcessor
from polymodal.processors.tabular import TabularProcessor
from polymodal.processors.text import TextProcessor
from polymodal.processors.video import VideoProcessor

PROCESSORS: dict[str, type[Processor]] = {
    cls.kind: cls
    for cls in (ImageProcessor, TextProcessor, AudioProcessor, TabularProcessor, VectorProcessor, SequenceProcessor,
                VideoProcessor)
}


def build_processor(spec: Any, field: str) -> Processor:
    return PROCESSORS[spec.type](spec, field)


__all__ = ["PROCESSORS", "Processor", "build_processor"]
