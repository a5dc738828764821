"""Task regression: one or more numbers per record."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.data.missing import is_empty
from polymodal.errors import RecordError
from polymodal.metrics import mean_absolute_error, mean_squared_error, pearson, r2_score
from polymodal.processors.base import FLOAT32_MAX
from polymodal.tasks.base import TASKS, Task

if TYPE_CHECKING:
    pass

@TASKS.register("regression")
class Regression(Task):
    """Mean squared error on standardized targets; predictions and metrics in the data's units."""

    name = "regression"
    monitor = "rmse"
    mode = "min"

    def unlabelled(self, value: Any) -> bool:
        return all(is_empty(v) for v in (value if isinstance(value, (list, tuple)) else [value]))

    def fit(self, values: list[Any]) -> None:
        numbers = [n for n in map(self._try_number, values) if n is not None]
        if not numbers:
            raise RecordError(f"target {self.target.field!r} has no numeric value in the training split; regression "
                              "needs numbers (for class labels use task multiclass or binary)")
        y = np.stack(numbers)  # (N, K)
        self.mean = y.mean(axis=0).tolist()
        self.std = np.maximum(y.std(axis=0), 1e-8).tolist()

    def _try_number(self, value: Any) -> np.ndarray | None:
        try:
            return self._number(value)
        except RecordError:
            return None

    def _number(self, value: Any) -> np.ndarray:
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(is_empty(v) for v in values):
            raise RecordError("target is empty or NaN; fill it in or drop the record")
        try:
            out = np.asarray([float(v) for v in values], dtype=np.float64)
        except (TypeError, ValueError):
            raise RecordError(f"target {value!r} is not a number") from None
        if not np.isfinite(out).all():
            raise RecordError(f"target {value!r} is not finite")
        if (np.abs(out) > FLOAT32_MAX).any():
            raise RecordError(f"target {value!r} is too large for float32, the model's number type")
        return out

    def encode(self, value: Any) -> np.ndarray:
        return ((self._number(value) - self.mean) / np.asarray(self.std)).astype(np.float32)

    @property
    def num_outputs(self) -> int:
        return len(self.fields)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(logits, target)

    def _units(self, x: Tensor) -> Tensor:
        return x.float() * torch.tensor(self.std, device=x.device) + torch.tensor(self.mean, device=x.device)

    def predict(self, logits: Tensor) -> list[Any]:
        y = self._units(logits).cpu().numpy()
        return y[:, 0].tolist() if y.shape[1] == 1 else y.tolist()

    def metrics(self, logits: Tensor, target: Tensor,
                embeddings: Mapping[str, Tensor] | None = None) -> dict[str, float]:
        pred, true = self._units(logits), self._units(target)  # (N, K)
        return {
            "mae": mean_absolute_error(pred, true).item(),
            "rmse": math.sqrt(mean_squared_error(pred, true).item()),
            "r2": r2_score(pred, true).item(),
            "pearson": pearson(pred, true).mean().item(),
        }

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = state["mean"], state["std"]

