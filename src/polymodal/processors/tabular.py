"""Tabular: numeric columns standardized with a missing indicator; categories to indices (0 = unknown)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from polymodal.config import TabularSpec
from polymodal.errors import RecordError
from polymodal.processors.base import FLOAT32_MAX, Arrays, Processor, is_empty


class TabularProcessor(Processor):
    kind = "tabular"
    spec: TabularSpec

    def __init__(self, spec: TabularSpec, field: str) -> None:
        super().__init__(spec, field)
        self.mean = [0.0] * len(spec.numeric)
        self.std = [1.0] * len(spec.numeric)
        self.categories: dict[str, list[str]] = {c: [] for c in spec.categorical}

    @property
    def columns(self) -> list[str]:
        return [*self.spec.numeric, *self.spec.categorical]

    def values(self, frame: pd.DataFrame) -> list[Any]:
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise KeyError(f"columns {missing} are not in the data; columns: {', '.join(map(str, frame.columns))}")
        return frame[self.columns].to_dict("records")

    def is_missing(self, value: Any) -> bool:
        return all(is_empty(v) for v in value.values())

    def fit(self, values: list[Any], root: Path) -> None:
        for col in self.spec.categorical:
            self.categories[col] = sorted({str(v[col]) for v in values if not is_empty(v[col])})

    def decode_raw(self, value: Any, root: Path) -> dict[str, Any]:
        """The record's values by column (numeric and categorical), as in the table."""
        return {c: value[c] for c in self.columns}

    def features(self, raw: dict[str, Any]) -> Arrays:
        numeric = np.array([_number(raw[c], c) for c in self.spec.numeric], dtype=np.float32)
        cats = [self._index(c, raw[c]) for c in self.spec.categorical]
        return {"numeric": numeric, "categorical": np.asarray(cats, dtype=np.int64)}

    def notes(self, value: Any) -> list[str]:
        return [f"numeric column {c!r} is empty: filled in (the training mean, with a missing indicator)"
                for c in self.spec.numeric if is_empty(value[c])]

    def _index(self, column: str, value: Any) -> int:
        if is_empty(value):
            return 0
        known = self.categories[column]
        pos = int(np.searchsorted(known, str(value)))
        return pos + 1 if pos < len(known) and known[pos] == str(value) else 0

    def blank(self) -> Arrays:
        return {"numeric": np.full(len(self.spec.numeric), np.nan, dtype=np.float32),
                "categorical": np.zeros(len(self.spec.categorical), dtype=np.int64)}

    def fit_items(self, items: list[Arrays]) -> None:
        if not self.spec.numeric:
            return
        x = np.stack([it["numeric"] for it in items]).astype(np.float64)  # (N, K)
        self.mean = np.nan_to_num(np.nanmean(x, axis=0)).tolist() if np.isfinite(x).any() else self.mean
        self.std = np.maximum(np.nan_to_num(np.nanstd(x, axis=0), nan=1.0), 1e-6).tolist()

    def encoder_inputs(self) -> dict[str, Any]:
        return {"n_numeric": len(self.spec.numeric),
                "cardinalities": [len(self.categories[c]) + 1 for c in self.spec.categorical]}

    def to_model(self, inputs: dict[str, Tensor], train: bool) -> dict[str, Tensor]:
        x = inputs["numeric"]  # (B, K)
        missing = torch.isnan(x)
        mean = self.stats("mean", x)
        std = self.stats("std", x)
        z = torch.where(missing, torch.zeros_like(x), (x - mean) / std)
        return {"numeric": torch.cat([z, missing.float()], dim=1), "categorical": inputs["categorical"]}  # (B, 2K)

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "categories": self.categories}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std, self.categories = state["mean"], state["std"], state["categories"]


def _number(value: Any, column: str) -> float:
    if is_empty(value):
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RecordError(f"numeric column {column!r} holds {value!r}, which is not a number") from None
    if math.isinf(number):
        raise RecordError(f"numeric column {column!r} holds an infinite value")
    if abs(number) > FLOAT32_MAX:
        raise RecordError(f"numeric column {column!r} holds {value!r}, too large for float32 (the model's number "
                          "type, finite up to about 3.4e38)")
    return number
