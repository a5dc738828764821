"""What counts as a missing value in a record (the modality, or the label, is absent for that record)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def is_empty(value: Any) -> bool:
    """True for the values that mean 'this modality is missing for this record'."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str) and not value.strip():
        return True
    if isinstance(value, (list, tuple, np.ndarray, bytes, bytearray)) and len(value) == 0:
        return True
    return False
