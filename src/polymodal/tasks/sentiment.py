"""Task sentiment: regression on a sentiment scale with the CMU-MOSI metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor

from polymodal.errors import RecordError
from polymodal.metrics import accuracy, f1_score, pearson
from polymodal.tasks.base import TASKS
from polymodal.tasks.regression import Regression

if TYPE_CHECKING:
    pass

@TASKS.register("sentiment")
class Sentiment(Regression):
    """A sentiment score in [-3, 3] (CMU-MOSI/MOSEI): regression plus the metrics the field reports for it.

    See `sentiment_metrics`; selection is on `mae` (lower is better).
    """

    name = "sentiment"
    monitor = "mae"

    def fit(self, values: list[Any]) -> None:
        if len(self.fields) != 1:
            raise RecordError(f"task sentiment reads one score column, not {self.fields}")
        super().fit(values)

    def metrics(self, logits: Tensor, target: Tensor,
                embeddings: Mapping[str, Tensor] | None = None) -> dict[str, float]:
        pred, true = self._units(logits)[:, 0], self._units(target)[:, 0]
        return super().metrics(logits, target) | sentiment_metrics(pred, true)


def sentiment_metrics(pred: Tensor, true: Tensor) -> dict[str, float]:
    """Sentiment-score metrics on (N,) predictions and truths in [-3, 3], as reported for CMU-MOSI/MOSEI.

    `acc2`/`f1`: negative vs positive over the records whose true score is non-zero (the "non-0" convention);
    `acc2_has0`/`f1_has0`: negative vs non-negative over all records. F1 is weighted by class support.
    `acc7`: both clipped to [-3, 3] and rounded to the nearest integer (halves to even, as `np.round`).
    """
    def binary(p: Tensor, t: Tensor) -> tuple[float, float]:
        if t.numel() == 0:
            return float("nan"), float("nan")
        return accuracy(p, t).item(), f1_score(p.long(), t.long(), 2, average="weighted").item()

    nonzero = true != 0
    acc2, f1 = binary(pred[nonzero] > 0, true[nonzero] > 0)
    acc2_has0, f1_has0 = binary(pred >= 0, true >= 0)
    classes = (pred.clamp(-3, 3).round(), true.clamp(-3, 3).round())
    return {"acc2": acc2, "f1": f1, "acc2_has0": acc2_has0, "f1_has0": f1_has0,
            "acc7": (classes[0] == classes[1]).float().mean().item(),
            "mae": (pred - true).abs().mean().item(),
            "pearson": pearson(pred, true).item()}

