"""Tasks: how targets are encoded, the loss, predictions and metrics (torchmetrics) for each task type."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping
from itertools import permutations
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
import torchmetrics.functional as M
from torch import Tensor

from polymodal.config import TargetConfig
from polymodal.errors import RecordError, UnknownLabel
from polymodal.processors.base import FLOAT32_MAX, is_empty
from polymodal.registry import Registry

if TYPE_CHECKING:
    from polymodal.model import Output

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


def _label(value: Any) -> str:
    if is_empty(value):
        raise RecordError("label is empty or NaN; fill it in or drop the record")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _sort_labels(labels: set[str]) -> list[str]:
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


class _SingleLabel(Task):
    classes: list[str]

    def fit(self, values: list[Any]) -> None:
        self.classes = _sort_labels({_label(v) for v in values if not is_empty(v)})
        if len(self.classes) < 2:
            raise RecordError(f"target {self.target.field!r} has {len(self.classes)} class(es) in the training "
                              "split; classification needs at least 2")

    def unlabelled(self, value: Any) -> bool:
        return is_empty(value)

    def encode(self, value: Any) -> np.ndarray:
        label = _label(value)
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
        return {"classes": self.classes}

    def load_state(self, state: dict[str, Any]) -> None:
        self.classes = state["classes"]


@TASKS.register("multiclass")
class Multiclass(_SingleLabel):
    name = "multiclass"
    monitor = "accuracy"

    @property
    def num_outputs(self) -> int:
        return len(self.classes)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits, target)

    def class_index(self, logits: Tensor) -> Tensor:
        return logits.argmax(dim=1)

    def proba(self, logits: Tensor) -> dict[str, np.ndarray]:
        p = logits.float().softmax(dim=1).cpu().numpy()
        return {c: p[:, i] for i, c in enumerate(self.classes)}

    def metrics(self, logits: Tensor, target: Tensor,
                embeddings: Mapping[str, Tensor] | None = None) -> dict[str, float]:
        k = self.num_outputs
        return {
            "accuracy": M.accuracy(logits, target, task="multiclass", num_classes=k).item(),
            "macro_f1": M.f1_score(logits, target, task="multiclass", num_classes=k, average="macro").item(),
            "auroc": M.auroc(logits.float().softmax(1), target, task="multiclass", num_classes=k).item(),
        }

    def confusion(self, logits: Tensor, target: Tensor) -> np.ndarray:
        return M.confusion_matrix(logits, target, task="multiclass", num_classes=self.num_outputs).cpu().numpy()


@TASKS.register("binary")
class Binary(_SingleLabel):
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
        return F.binary_cross_entropy_with_logits(logits[:, 0], target.float())

    def class_index(self, logits: Tensor) -> Tensor:
        return (logits[:, 0] > 0).long()

    def proba(self, logits: Tensor) -> dict[str, np.ndarray]:
        p = torch.sigmoid(logits[:, 0].float()).cpu().numpy()
        return {self.classes[0]: 1.0 - p, self.classes[1]: p}

    def metrics(self, logits: Tensor, target: Tensor,
                embeddings: Mapping[str, Tensor] | None = None) -> dict[str, float]:
        p = torch.sigmoid(logits[:, 0].float())
        return {
            "accuracy": M.accuracy(p, target, task="binary").item(),
            "macro_f1": M.f1_score(torch.stack([1 - p, p], 1), target, task="multiclass", num_classes=2,
                                   average="macro").item(),
            "auroc": M.auroc(p, target, task="binary").item(),
        }

    def confusion(self, logits: Tensor, target: Tensor) -> np.ndarray:
        return M.confusion_matrix(torch.sigmoid(logits[:, 0].float()), target, task="binary").cpu().numpy()


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
        p, t, k = torch.sigmoid(logits.float()), target.long(), self.num_outputs
        return {
            "micro_f1": M.f1_score(p, t, task="multilabel", num_labels=k, average="micro").item(),
            "macro_f1": M.f1_score(p, t, task="multilabel", num_labels=k, average="macro").item(),
            "map": mean_average_precision(p, t),
            **{f"precision_at_{n}": precision_at_k(p, t, n) for n in self.ks},
        }

    def state(self) -> dict[str, Any]:
        return {"classes": self.classes, "thresholds": self.thresholds}

    def load_state(self, state: dict[str, Any]) -> None:
        self.classes, self.thresholds = state["classes"], state.get("thresholds")


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
        pred, true = self._units(logits), self._units(target)
        pearson = M.pearson_corrcoef(pred, true)
        return {
            "mae": M.mean_absolute_error(pred, true).item(),
            "rmse": math.sqrt(M.mean_squared_error(pred, true).item()),
            "r2": M.r2_score(pred, true).item(),
            "pearson": pearson.mean().item(),
        }

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = state["mean"], state["std"]


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
        acc = (p == t).float().mean().item()
        f1 = M.f1_score(p.long(), t.long(), task="multiclass", num_classes=2, average="weighted").item()
        return acc, f1

    nonzero = true != 0
    acc2, f1 = binary(pred[nonzero] > 0, true[nonzero] > 0)
    acc2_has0, f1_has0 = binary(pred >= 0, true >= 0)
    classes = (pred.clamp(-3, 3).round(), true.clamp(-3, 3).round())
    return {"acc2": acc2, "f1": f1, "acc2_has0": acc2_has0, "f1_has0": f1_has0,
            "acc7": (classes[0] == classes[1]).float().mean().item(),
            "mae": (pred - true).abs().mean().item(),
            "pearson": M.pearson_corrcoef(pred, true).item() if len(pred) > 1 else float("nan")}


@TASKS.register("retrieval")
class Retrieval(Task):
    """Two or more towers (an encoder plus the contrastive projection per modality) into one embedding space.

    Reads no labels: the contrastive objective (the config adds one when none is listed) learns from which
    modalities belong to the same record. A retrieval run on unlabeled records is therefore also how
    polymodal pretrains self-supervised: encoders through the contrastive (and any dcca) objective, the fusion
    through a reconstruction objective; a labelled run then starts from it with `training.init_from`.
    The task loss is zero; metrics are R@1/5/10 and the median rank for every ordered pair of modalities
    (`a_to_b_r1`, ..., `a_to_b_median_rank`) plus `mean_recall`, the mean of all R@k.
    """

    name = "retrieval"
    monitor = "mean_recall"
    ks: ClassVar[tuple[int, ...]] = (1, 5, 10)

    @property
    def fields(self) -> list[str]:
        return []

    def values(self, frame: Any) -> list[Any]:
        return [None] * len(frame)

    def fit(self, values: list[Any]) -> None:
        """Nothing to learn from labels."""

    def encode(self, value: Any) -> np.ndarray:
        return np.zeros(0, dtype=np.float32)

    @property
    def num_outputs(self) -> int:
        return 0

    def loss(self, logits: Tensor, target: Tensor | None) -> Tensor:
        return logits.sum() * 0.0  # (B, 0) logits: a zero that still backpropagates

    def predict(self, logits: Tensor) -> list[Any]:
        raise ValueError("a retrieval run predicts no labels; use Predictor.embed(modality=...) or "
                         "Predictor.retrieve")

    def metrics(self, logits: Tensor, target: Tensor | None,
                embeddings: Mapping[str, Tensor] | None = None) -> dict[str, float]:
        if embeddings is None:
            raise ValueError("retrieval metrics need the contrastive embeddings (Output.embeddings)")
        out: dict[str, float] = {}
        for a, b in permutations(embeddings, 2):
            za, zb = embeddings[a].float(), embeddings[b].float()
            both = ~(za.isnan().any(dim=1) | zb.isnan().any(dim=1))  # (N,)
            if bool(both.any()):
                out.update(retrieval_metrics(za[both] @ zb[both].T, f"{a}_to_{b}", self.ks))
        recalls = [v for k, v in out.items() if not k.endswith("_median_rank")]
        out["mean_recall"] = float(np.mean(recalls)) if recalls else float("nan")
        return out


def retrieval_ranks(similarity: Tensor) -> Tensor:
    """1-based rank of the matching candidate (the diagonal) for each query row of an (N, N) similarity.

    Ties count against the query (pessimistic rank): every other candidate scoring at least as high as the
    match ranks above it, so a collapsed embedding (all rows equal) ranks every match last.
    """
    return (similarity >= similarity.diagonal()[:, None]).sum(dim=1)  # (N,) the match counts itself


def retrieval_metrics(similarity: Tensor, prefix: str, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Recall@k for each k and the median rank, from an (N, N) query x candidate similarity.

    The median rank is a whole rank, as open_clip reports it: the median rounded down (between the two middle
    ranks of an even count, no interpolated half).
    """
    ranks = retrieval_ranks(similarity).float()
    out = {f"{prefix}_r{k}": (ranks <= k).float().mean().item() for k in ks}
    out[f"{prefix}_median_rank"] = float(math.floor(ranks.quantile(0.5).item()))
    return out


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


def mean_average_precision(scores: Tensor, target: Tensor) -> float:
    """Mean over the labels with at least one positive record of their average precision; (N, K) inputs."""
    present = target.sum(dim=0) > 0  # (K,)
    if not bool(present.any()):
        return float("nan")
    s, t = scores[:, present], target[:, present]  # (N, K')
    if s.shape[1] == 1:  # torchmetrics' multilabel form needs two labels or more
        return M.average_precision(s[:, 0], t[:, 0], task="binary").item()
    return M.average_precision(s, t, task="multilabel", num_labels=s.shape[1], average=None).mean().item()


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


def build_task(target: TargetConfig) -> Task:
    return TASKS.get(target.task)(target)


import polymodal.generation.task  # noqa: E402,F401  (registers task "generation"; it builds on Task above)
