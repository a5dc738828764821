"""The task contract, its registry, and what classification tasks share."""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from polymodal.config import TargetConfig
from polymodal.data.missing import is_empty
from polymodal.errors import RecordError, UnknownLabel
from polymodal.heads import Head, LinearHead
from polymodal.registry import Registry

if TYPE_CHECKING:
    from polymodal.output import Output

TASKS: Registry[Task] = Registry("task")


class Task(ABC):
    """Owns everything task-specific so that nothing else branches on the task name."""

    name: ClassVar[str]
    monitor: ClassVar[str]
    mode: ClassVar[str] = "max"

    def __init__(self, target: TargetConfig) -> None:
        self.target = target

    @property
    def fields(self) -> list[str]:
        return [self.target.field] if isinstance(self.target.field, str) else list(self.target.field)

    def values(self, frame: Any) -> list[Any]:
        missing = [f for f in self.fields if f not in frame.columns]
        if missing:
            raise KeyError(f"target column(s) {missing} not in the data; columns: {', '.join(map(str, frame.columns))}")
        if len(self.fields) == 1:
            return frame[self.fields[0]].tolist()
        return frame[self.fields].values.tolist()

    @abstractmethod
    def fit(self, values: list[Any]) -> None: ...

    @abstractmethod
    def encode(self, value: Any) -> np.ndarray: ...

    @property
    @abstractmethod
    def num_outputs(self) -> int: ...

    @abstractmethod
    def loss(self, logits: Tensor, target: Tensor) -> Tensor: ...

    @abstractmethod
    def metrics(self, logits: Tensor, target: Tensor,
                embeddings: Mapping[str, Tensor] | None = None) -> dict[str, float]:
        """Metrics over a whole split; `embeddings` is `Output.embeddings` (used by retrieval)."""

    @abstractmethod
    def predict(self, logits: Tensor) -> list[Any]:
        """Predictions in the label space of the data (class names, values)."""

    def proba(self, logits: Tensor) -> dict[str, np.ndarray]:
        """Per-class probabilities by class name (empty for regression)."""
        return {}

    scalar_predictions: ClassVar[bool] = True  # predictions are classes or numbers (False: generated text)

    @classmethod
    def build_head(cls, target: TargetConfig, fused_dim: int, in_dims: Mapping[str, int], num_outputs: int) -> Head:
        """The task's head, with widths from the fusion (`fused_dim`) and the encoders (`in_dims`): by default a
        linear map from the fused representation to the `num_outputs` logits (0 for retrieval)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Initializing zero-element tensors")  # num_outputs == 0
            return LinearHead(fused_dim, num_outputs)

    def scores(self, out: Output) -> Tensor:
        """What `predict` and `metrics` read from the model's output: the logits (generation: generated ids)."""
        return out.logits

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what `state` returned."""

    def unlabelled(self, value: Any) -> bool:
        """True if a record has no label at all; such records are left out of training and evaluation (with a
        warning and a count), never an error. Tasks whose empty label is meaningful (no tags) keep False."""
        return False


def label_text(value: Any) -> str:
    """A class label as text (1.0 -> "1"); an empty or NaN label is a record error."""
    if is_empty(value):
        raise RecordError("label is empty or NaN; fill it in or drop the record")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def sort_labels(labels: set[str]) -> list[str]:
    """Numeric labels in numeric order, others alphabetically."""
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


def balanced_weights(counts: list[int], cap: float) -> list[float]:
    """Per class N / (K * N_class) (scikit-learn's `class_weight='balanced'`), at most `cap`."""
    total, k = sum(counts), len(counts)
    return [min(cap, total / (k * max(c, 1))) for c in counts]


class SingleLabel(Task):
    """Binary and multiclass: one class name per record, fitted from the training split."""

    classes: list[str]
    class_weights: list[float] | None = None  # per class, in the loss (target.class_weight: balanced)

    def fit(self, values: list[Any]) -> None:
        labels = [label_text(v) for v in values if not is_empty(v)]
        self.classes = sort_labels(set(labels))
        if len(self.classes) < 2:
            raise RecordError(f"target {self.target.field!r} has {len(self.classes)} class(es) in the training "
                              "split; classification needs at least 2")
        if self.target.class_weight == "balanced":
            counts = [labels.count(c) for c in self.classes]
            self.class_weights = balanced_weights(counts, self.target.class_weight_cap)

    def sample_weights(self, target: Tensor) -> Tensor | None:
        """(B,) each record's class weight, or None without class weighting."""
        if self.class_weights is None:
            return None
        return torch.tensor(self.class_weights, device=target.device)[target.long()]

    def unlabelled(self, value: Any) -> bool:
        return is_empty(value)

    def encode(self, value: Any) -> np.ndarray:
        label = label_text(value)
        try:
            return np.asarray(self._index[label], dtype=np.int64)
        except KeyError:
            raise UnknownLabel(f"label {label!r} does not occur in the training split "
                               f"(known: {', '.join(self.classes[:20])})") from None

    @property
    def _index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def predict(self, logits: Tensor) -> list[Any]:
        return [self.classes[i] for i in self.class_index(logits).tolist()]

    @abstractmethod
    def class_index(self, logits: Tensor) -> Tensor: ...

    def state(self) -> dict[str, Any]:
        return {"classes": self.classes} | ({"class_weights": self.class_weights} if self.class_weights else {})

    def load_state(self, state: dict[str, Any]) -> None:
        self.classes = state["classes"]
        self.class_weights = state.get("class_weights")


def build_task(target: TargetConfig) -> Task:
    return TASKS.get(target.task)(target)

