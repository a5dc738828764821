"""`export/preprocess.py` is copied next to an exported model and may not import polymodal, so it keeps its own
copy of `data.missing.is_empty`: the two must agree on what marks a modality missing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from polymodal.data.missing import is_empty
from polymodal.export import preprocess


@pytest.mark.parametrize("value", [None, float("nan"), "", "  \n", [], (), np.zeros(0), b"", bytearray(),
                                   0, 0.0, "x", [0], np.zeros(2), b"\x00", False, {"a": 1}])
def test_the_standalone_copy_agrees_with_the_library(value: Any) -> None:
    assert preprocess.is_empty(value) == is_empty(value)
