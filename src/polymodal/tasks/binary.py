"""Task binary: two classes, one logit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.errors import RecordError
from polymodal.metrics import accuracy, auroc, confusion_matrix, f1_score
from polymodal.tasks.base import TASKS, SingleLabel

if TYPE_CHECKING:
    pass

@TASKS.register("binary")
class Binary(SingleLabel):
    """Two classes, one logit: the probability of the second class in sorted order."""

    name = "binary"
    monitor = "accuracy"

    def fit(self, values: list[Any]) -> None:
        super().fit(values)
        if len(self.classes) != 2:
            raise RecordError(f"binary target {self.target.field!r} has {len(self.classes)} classes in the "
                              f"training split ({', '.join(self.classes[:10])}); use task: multiclass")

    @property
    def num_outputs(self) -> int:
        return 1

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        weight = self.sample_weights(target)  # (B,) or None
        loss = F.binary_cross_entropy_with_logits(logits[:, 0], target.float(), weight=weight, reduction="sum")
        return loss / (weight.sum() if weight is not None else target.numel())

    def class_index(self, logits: Tensor) -> Tensor:
        return (logits[:, 0] > 0).long()

    def proba(self, logits: Tensor) -> dict[str, np.ndarray]:
        p = torch.sigmoid(logits[:, 0].float()).cpu().numpy()
        return {self.classes[0]: 1.0 - p, self.classes[1]: p}

    def metrics(self, logits: Tensor, target: Tensor,
                embeddings: Mapping[str, Tensor] | None = None) -> dict[str, float]:
        p = torch.sigmoid(logits[:, 0].float())  # (N,)
        decided = self.class_index(logits)  # (N,) as `predict` decides (a float32 sigmoid rounds tiny logits to 0.5)
        return {
            "accuracy": accuracy(decided, target).item(),
            "macro_f1": f1_score(decided, target, 2, average="macro").item(),
            "auroc": auroc(p, target.bool()).item(),
        }

    def confusion(self, logits: Tensor, target: Tensor) -> np.ndarray:
        return confusion_matrix(self.class_index(logits), target, 2).cpu().numpy()

