"""Task vqa: answers as classes, scored by VQA accuracy against every annotator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from torch import Tensor

from polymodal.data.missing import is_empty
from polymodal.errors import RecordError
from polymodal.tasks.base import TASKS, Task

if TYPE_CHECKING:
    pass

@TASKS.register("vqa")
class VQA(Task):
    """Visual question answering: classification over the answer vocabulary with soft targets.

    The target cell holds every annotator's answer (a list, or one string split on `target.separator`). Each
    vocabulary answer gets its VQA accuracy as target (see `vqa_scores`); the loss is cross-entropy against the
    scores normalized to sum 1. The vocabulary is the `max_answers` answers given for most training questions,
    among those given for at least `target.min_count` of them (VQA models commonly keep answers seen 9+ times).
    Metrics: `vqa_accuracy` (the mean VQA accuracy of the predicted answer; with one answer per question it is
    plain accuracy) and `accuracy` (the prediction equals the best-scored answer).
    """

    name = "vqa"
    monitor = "vqa_accuracy"
    max_answers: ClassVar[int] = 3000

    def _answers(self, value: Any) -> list[str]:
        if isinstance(value, (list, tuple, np.ndarray)):
            items = [str(v) for v in value]
        elif is_empty(value):
            items = []
        else:
            items = str(value).split(self.target.separator)
        return [a for a in map(normalize_answer, items) if a]

    def fit(self, values: list[Any]) -> None:
        counts: dict[str, int] = {}
        for v in values:
            for a in set(self._answers(v)):
                counts[a] = counts.get(a, 0) + 1
        if len(counts) < 2:
            raise RecordError(f"vqa target {self.target.field!r} has {len(counts)} distinct answer(s) in the "
                              "training split; at least 2 are needed")
        kept = sorted(a for a, n in counts.items() if n >= self.target.min_count)
        self.classes = sorted(kept, key=lambda a: -counts[a])[: self.max_answers]
        if len(self.classes) < 2:
            raise RecordError(f"vqa target {self.target.field!r}: {len(self.classes)} answer(s) given for at least "
                              f"{self.target.min_count} training questions (target.min_count); lower min_count")

    def encode(self, value: Any) -> np.ndarray:
        answers = self._answers(value)
        if not answers:
            raise RecordError("no answer given; fill in the answers or drop the question")
        index = {c: i for i, c in enumerate(self.classes)}
        out = np.zeros(len(self.classes), dtype=np.float32)
        for answer, score in vqa_scores(answers).items():
            if answer in index:  # an answer outside the vocabulary cannot be predicted: it scores 0
                out[index[answer]] = score
        return out

    @property
    def num_outputs(self) -> int:
        return len(self.classes)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        total = target.sum(dim=1, keepdim=True)  # (B, 1)
        per_record = -(target / total.clamp_min(1e-8) * logits.log_softmax(dim=1)).sum(dim=1)  # (B,)
        answerable = total[:, 0] > 0  # (B,) records whose answers are all outside the vocabulary teach nothing
        return per_record[answerable].mean() if bool(answerable.any()) else logits.sum() * 0.0

    def predict(self, logits: Tensor) -> list[Any]:
        return [self.classes[i] for i in logits.argmax(dim=1).tolist()]

    def proba(self, logits: Tensor) -> dict[str, np.ndarray]:
        p = logits.float().softmax(dim=1).cpu().numpy()
        return {c: p[:, i] for i, c in enumerate(self.classes)}

    def metrics(self, logits: Tensor, target: Tensor,
                embeddings: Mapping[str, Tensor] | None = None) -> dict[str, float]:
        pick = logits.argmax(dim=1, keepdim=True)  # (N, 1)
        best = target.max(dim=1)  # the best-scored answer per record
        return {"vqa_accuracy": target.gather(1, pick)[:, 0].mean().item(),
                "accuracy": ((pick[:, 0] == best.indices) & (best.values > 0)).float().mean().item()}

    def state(self) -> dict[str, Any]:
        return {"classes": self.classes}

    def load_state(self, state: dict[str, Any]) -> None:
        self.classes = state["classes"]


_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten".split())}


def normalize_answer(answer: str) -> str:
    """Lowercase, strip punctuation at the ends, number words to digits, drop articles (a light form of the
    official VQA answer normalization)."""
    words = answer.lower().strip().strip(".,!?;:'\"").split()
    return " ".join(_NUMBER_WORDS.get(w, w) for w in words if w not in ("a", "an", "the"))


def vqa_scores(answers: list[str]) -> dict[str, float]:
    """VQA accuracy of each distinct answer among `answers` (one per annotator, already normalized).

    With N >= 3 annotators, the official form: min(#other annotators who gave it / 3, 1), averaged over
    leaving each annotator out in turn (the 10-choose-9 subsets for VQA's 10 answers). With N < 3 there are
    too few annotators for that: the fraction who gave it (N = 1: plain accuracy).
    """
    n = len(answers)
    counts = {a: answers.count(a) for a in dict.fromkeys(answers)}
    if n < 3:
        return {a: k / n for a, k in counts.items()}
    return {a: (k * min((k - 1) / 3, 1.0) + (n - k) * min(k / 3, 1.0)) / n for a, k in counts.items()}

