"""Precomputed features: `vector` (F,) and `sequence` (T, F) from a .npy path or a list-valued cell."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from polymodal.config import SequenceSpec, VectorSpec
from polymodal.errors import RecordError
from polymodal.processors.base import FLOAT32_MAX, Arrays, Processor, mean_std, resolve_file


def read_array(value: Any, root: Path, allow_outside: bool = False) -> np.ndarray:
    """A float array from a list/array cell, a JSON list string, or a path to a .npy file."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = parse_list(text)
        else:
            path = resolve_file(text, root, allow_outside)
            try:
                value = np.load(path, allow_pickle=False)
            except (ValueError, OSError) as err:
                raise RecordError(f"cannot read {str(path)!r} as a .npy array ({err})") from None
    try:
        wide = np.asarray(value if not isinstance(value, np.ndarray) or value.dtype != object
                          else np.stack(list(value)), dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise RecordError(f"not a numeric array: {err}") from None
    if not np.isfinite(wide).all():
        raise RecordError("array holds NaN or infinite values")
    if (np.abs(wide) > FLOAT32_MAX).any():
        raise RecordError("array holds values too large for float32 (the model's number type)")
    array = wide.astype(np.float32)
    return array


def most_common(values: list[int]) -> int:
    counts = np.bincount(values)
    return int(counts.argmax())


def parse_list(text: str) -> Any:
    """A JSON list, or a flat list written by numpy/pandas (`[ 1.5 -0.2  3. ]`)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        inner = text.strip()[1:-1] if text.strip().endswith("]") else ""
        try:
            if "[" in inner or not inner.strip():
                raise ValueError
            return [float(x) for x in re.split(r"[,\s]+", inner.strip()) if x]
        except ValueError:
            raise RecordError(f"cannot parse {text[:40]!r} as a list of numbers ({err})") from None


class _FeatureArrays(Processor):
    """Shared by `vector` and `sequence`: a feature width fixed by the training data, standardized per feature."""

    def __init__(self, spec: VectorSpec | SequenceSpec, field: str) -> None:
        super().__init__(spec, field)
        self.dim: int | None = None
        self.mean: list[float] = []
        self.std: list[float] = []

    def features(self, raw: np.ndarray) -> Arrays:
        return {"values": np.asarray(raw, dtype=np.float32)}

    def encoder_inputs(self) -> dict[str, Any]:
        return {"in_dim": self.dim}

    def state(self) -> dict[str, Any]:
        return {"dim": self.dim, "mean": self.mean, "std": self.std}

    def load_state(self, state: dict[str, Any]) -> None:
        self.dim, self.mean, self.std = state["dim"], state["mean"], state["std"]


class VectorProcessor(_FeatureArrays):
    kind = "vector"
    spec: VectorSpec


    def decode_raw(self, value: Any, root: Path) -> np.ndarray:
        """(F,) float32."""
        array = read_array(value, root, self.allow_outside_root)
        if array.ndim != 1:
            raise RecordError(f"expected a flat list of numbers, got an array of shape {tuple(array.shape)}")
        return array

    def check(self, item: Arrays) -> None:
        if item["values"].shape[0] != self.dim:
            raise RecordError(f"vector has {item['values'].shape[0]} values; the training data has {self.dim}")

    def fit_items(self, items: list[Arrays]) -> None:
        self.dim = most_common([it["values"].shape[0] for it in items])
        kept = [it["values"] for it in items if it["values"].shape[0] == self.dim]
        self.mean, self.std = mean_std(np.stack(kept), axis=(0,))

    def blank(self) -> Arrays:
        return {"values": np.zeros(self.dim or 1, dtype=np.float32)}

    def to_model(self, inputs: dict[str, Tensor], train: bool) -> dict[str, Tensor]:
        x = inputs["values"]
        return {"values": (x - self.stats("mean", x)) / self.stats("std", x)}


class SequenceProcessor(_FeatureArrays):
    kind = "sequence"
    ragged = True
    spec: SequenceSpec


    def decode_raw(self, value: Any, root: Path) -> np.ndarray:
        """(T, F) float32, cut to `max_length` steps."""
        array = read_array(value, root, self.allow_outside_root)
        array = array[:, None] if array.ndim == 1 else array
        if array.ndim != 2 or array.shape[0] == 0:
            raise RecordError(f"expected a (time, features) array, got shape {tuple(array.shape)}")
        return array[: self.spec.max_length]

    def check(self, item: Arrays) -> None:
        if item["values"].shape[1] != self.dim:
            raise RecordError(f"sequence has {item['values'].shape[1]} features per step; "
                              f"the training data has {self.dim}")

    def fit_items(self, items: list[Arrays]) -> None:
        self.dim = most_common([it["values"].shape[1] for it in items])
        kept = [it["values"] for it in items if it["values"].shape[1] == self.dim]
        self.mean, self.std = mean_std(np.concatenate(kept), axis=(0,))

    def blank(self) -> Arrays:
        return {"values": np.zeros((1, self.dim or 1), dtype=np.float32)}

    def to_model(self, inputs: dict[str, Tensor], train: bool) -> dict[str, Tensor]:
        x = inputs["values"]  # (B, T, F)
        z = (x - self.stats("mean", x)) / self.stats("std", x)
        return {"values": z * inputs["mask"][..., None], "mask": inputs["mask"]}
