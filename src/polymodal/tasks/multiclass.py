"""Task multiclass: one class per record, softmax cross-entropy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.metrics import accuracy, confusion_matrix, f1_score, multiclass_auroc
from polymodal.tasks.base import TASKS, SingleLabel

if TYPE_CHECKING:
    pass

@TASKS.register("multiclass")
class Multiclass(SingleLabel):
    name = "multiclass"
    monitor = "accuracy"

    @property
    def num_outputs(self) -> int:
        return len(self.classes)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.class_weights is None:
            return F.cross_entropy(logits, target)
        weight = torch.tensor(self.class_weights, device=logits.device, dtype=logits.dtype)
        return F.cross_entropy(logits, target, weight=weight)  # a weighted mean over the batch

    def class_index(self, logits: Tensor) -> Tensor:
        return logits.argmax(dim=1)

    def proba(self, logits: Tensor) -> dict[str, np.ndarray]:
        p = logits.float().softmax(dim=1).cpu().numpy()
        return {c: p[:, i] for i, c in enumerate(self.classes)}

    def metrics(self, logits: Tensor, target: Tensor,
                embeddings: Mapping[str, Tensor] | None = None) -> dict[str, float]:
        decided = self.class_index(logits)  # (N,) the first class among tied logits, as `predict`
        return {
            "accuracy": accuracy(decided, target).item(),
            "macro_f1": f1_score(decided, target, self.num_outputs, average="macro").item(),
            "auroc": multiclass_auroc(logits.float().softmax(1), target).item(),
        }

    def confusion(self, logits: Tensor, target: Tensor) -> np.ndarray:
        return confusion_matrix(self.class_index(logits), target, self.num_outputs).cpu().numpy()

