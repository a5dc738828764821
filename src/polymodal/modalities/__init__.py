"""Modality types, one file each, registered by name; importing this package fills the registry.

Adding a modality type is one file here (its spec, processor, default encoder, corruptions, server input, export
description and preprocessing) plus one import line below, and its tests; `tests/test_modalities.py` checks that
every registered type provides every part.
"""

from __future__ import annotations

# registration order is the order users see (error messages, the config schema)
# isort: off
from polymodal.modalities import image, text, audio, tabular, vector, sequence, video  # noqa: F401
# isort: on
from polymodal.modalities.base import (
    MODALITIES,
    Columns,
    CorruptionPart,
    Modality,
    Preprocess,
    ServerInput,
    Unsupported,
    modality,
    modality_types,
    resolve,
)

__all__ = ["MODALITIES", "Columns", "CorruptionPart", "Modality", "Preprocess", "ServerInput", "Unsupported",
           "modality", "modality_types", "resolve"]
