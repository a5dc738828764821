"""Task multilabel: a set of labels per record, one sigmoid per label."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.data.missing import is_empty
from polymodal.errors import RecordError
from polymodal.metrics import average_precision, multilabel_f1
from polymodal.tasks.base import TASKS, Task

if TYPE_CHECKING:
    from polymodal.output import Output

@TASKS.register("multilabel")
class Multilabel(Task):
    """Any subset of labels per record: a cell like `cat|outdoor` (see target.separator) or a list.

    With `target.min_count` above 1 the vocabulary keeps the labels of at least that many training records and
    every other label is ignored. Metrics: micro/macro F1 (threshold 0.5), `map` (mean over the labels with at
    least one positive record in the split of their average precision) and `precision_at_k` (share of the k
    top-scored labels that are true, averaged over the records with at least one label).
    """

    name = "multilabel"
    monitor = "map"
    ks: ClassVar[tuple[int, ...]] = (1, 5)

    def _labels(self, value: Any) -> list[str]:
        if isinstance(value, (list, tuple, np.ndarray)):
            return [str(v).strip() for v in value if str(v).strip()]
        if is_empty(value):
            return []
        return [p.strip() for p in str(value).split(self.target.separator) if p.strip()]

    def fit(self, values: list[Any]) -> None:
        counts = Counter(label for v in values for label in set(self._labels(v)))
        self.classes = sorted(c for c, n in counts.items() if n >= self.target.min_count)
        if not self.classes:
            raise RecordError(f"multilabel target {self.target.field!r} has no labels in the training split with "
                              f"at least {self.target.min_count} records (target.min_count); lower min_count")

    def encode(self, value: Any) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        out = np.zeros(len(self.classes), dtype=np.float32)
        for label in self._labels(value):
            if label in index:
                out[index[label]] = 1.0
            elif self.target.min_count == 1:
                raise RecordError(f"label {label!r} does not occur in the training split (set target.min_count "
                                  "above 1 to ignore rare and unseen labels)")
        return out

    @property
    def num_outputs(self) -> int:
        return len(self.classes)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, target)

    thresholds: list[float] | None = None  # per label, tuned on validation (`training.thresholds`); None: 0.5

    def scores(self, out: Output) -> Tensor:
        """Logits shifted so that 0 is each label's threshold (predict and the F1 metrics decide at 0)."""
        if not self.thresholds:
            return out.logits
        t = torch.tensor(self.thresholds, device=out.logits.device).clamp(1e-4, 1 - 1e-4)
        return out.logits - torch.log(t / (1 - t))  # (B, L)

    def predict(self, logits: Tensor) -> list[Any]:
        hits = (logits > 0).cpu().numpy()
        return [self.target.separator.join(c for c, h in zip(self.classes, row) if h) for row in hits]

    def proba(self, logits: Tensor) -> dict[str, np.ndarray]:
        p = torch.sigmoid(logits.float()).cpu().numpy()
        return {c: p[:, i] for i, c in enumerate(self.classes)}

    def metrics(self, logits: Tensor, target: Tensor,
                embeddings: Mapping[str, Tensor] | None = None) -> dict[str, float]:
        p, t = torch.sigmoid(logits.float()), target.long()  # (N, L)
        decided, truth = p > 0.5, t.bool()  # (N, L)
        return {
            "micro_f1": multilabel_f1(decided, truth, average="micro").item(),
            "macro_f1": multilabel_f1(decided, truth, average="macro").item(),
            "map": mean_average_precision(p, t),
            **{f"precision_at_{n}": precision_at_k(p, t, n) for n in self.ks},
        }

    def state(self) -> dict[str, Any]:
        return {"classes": self.classes, "thresholds": self.thresholds}

    def load_state(self, state: dict[str, Any]) -> None:
        self.classes, self.thresholds = state["classes"], state.get("thresholds")


def mean_average_precision(scores: Tensor, target: Tensor) -> float:
    """Mean over the labels with at least one positive record of their average precision; (N, K) inputs."""
    present = target.sum(dim=0) > 0  # (K,)
    if not bool(present.any()):
        return float("nan")
    return average_precision(scores[:, present], target[:, present]).mean().item()


def precision_at_k(scores: Tensor, target: Tensor, k: int) -> float:
    """Share of the k top-scored labels that are true, averaged over records with at least one label.

    Ties count against the record: among labels with equal scores the false ones rank first, so a constant
    model scores the share it would get by bad luck, never by the order of the vocabulary.
    """
    labelled = target.sum(dim=1) > 0  # (N,)
    if not bool(labelled.any()):
        return float("nan")
    s, t = scores[labelled], target[labelled].float()  # (N', K)
    false_first = t.argsort(dim=1, stable=True)  # (N', K)
    by_score = s.gather(1, false_first).argsort(dim=1, descending=True, stable=True)  # ties keep false first
    top = false_first.gather(1, by_score[:, : min(k, s.shape[1])])  # (N', k)
    return t.gather(1, top).mean().item()

