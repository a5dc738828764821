"""The tasks' metric functions: pure, vectorized torch, with torchmetrics' definitions and edge cases.

polymodal computed these with `torchmetrics.functional`, whose import alone (it loads transformers, scipy.signal
and matplotlib when they are installed) cost more than `import torch`. Each function here gives the number
`torchmetrics.functional` gave for the same call (`tests/test_metrics.py` compares them on random inputs and on
the edge cases), except where torchmetrics raises (`r2_score` of one record: NaN here). All return 0-d tensors
(or one value per column where said); none loops over records in Python.

Conventions shared with torchmetrics:
- a ratio whose denominator is 0 is 0 (F1 of a class never predicted nor present, micro-F1 with no positives);
- single-label macro averages leave out the classes neither predicted nor present; multilabel macro averages
  keep every label (a label never positive nor predicted counts 0);
- AUROC and average precision put tied scores on one threshold (a constant score gives AUROC 0.5); AUROC of a
  column with only one class is 0, and so is average precision of a column without a positive.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor


def _ratio(num: Tensor, count: Tensor) -> Tensor:
    """num / count, for a count (integer-valued, >= 0) whose num is 0 wherever it is 0: 0 there."""
    return num / count.clamp_min(1)


def accuracy(predicted: Tensor, target: Tensor) -> Tensor:
    """Share of records whose (N,) predicted class equals the (N,) target class."""
    return (predicted == target).float().mean()


def confusion_matrix(predicted: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """(K, K) counts: row = true class, column = predicted class."""
    cells = target.long() * num_classes + predicted.long()  # (N,)
    return torch.bincount(cells, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def f1_score(predicted: Tensor, target: Tensor, num_classes: int,
             average: Literal["macro", "weighted"] = "macro") -> Tensor:
    """F1 of (N,) single-label class indices, averaged over the classes.

    `macro`: plain mean over the classes predicted or present (the others are left out); `weighted`: mean
    weighted by each class's number of true records.
    """
    predicted, target = predicted.long(), target.long()
    hit = torch.bincount(target[predicted == target], minlength=num_classes)  # (K,) true positives
    n_true = torch.bincount(target, minlength=num_classes)  # (K,) TP + FN
    both = torch.bincount(predicted, minlength=num_classes) + n_true  # (K,) 2TP + FP + FN
    f1 = _ratio(2 * hit, both)  # (K,)
    weight = (both > 0).float() if average == "macro" else n_true.float()  # (K,)
    return _ratio((f1 * weight).sum(), weight.sum())


def multilabel_f1(predicted: Tensor, target: Tensor, average: Literal["micro", "macro"] = "micro") -> Tensor:
    """F1 of (N, L) boolean decisions against (N, L) boolean truths.

    `micro`: counts summed over the labels, then F1; `macro`: mean over every label of its F1 (0 for a label
    never positive nor predicted).
    """
    predicted, target = predicted.bool(), target.bool()
    hit = (predicted & target).sum(0)  # (L,) true positives
    both = predicted.sum(0) + target.sum(0)  # (L,) 2TP + FP + FN
    if average == "micro":
        return _ratio(2 * hit.sum(), both.sum())
    return _ratio(2 * hit, both).mean()


def _runs(sorted_values: Tensor) -> tuple[Tensor, Tensor]:
    """First and last row index of the run of equal values each row of (N, K) column-sorted values is in."""
    n = sorted_values.shape[0]
    index = torch.arange(n, device=sorted_values.device).unsqueeze(1).expand_as(sorted_values)  # (N, K)
    change = sorted_values[1:] != sorted_values[:-1]  # (N-1, K) a new value starts at row i+1
    edge = torch.ones_like(sorted_values[:1], dtype=torch.bool)  # (1, K); (0, K) when N is 0
    starts = torch.cat([edge, change])  # (N, K)
    ends = torch.cat([change, edge])  # (N, K)
    first = torch.where(starts, index, 0).cummax(0).values  # (N, K)
    last = torch.where(ends, index, n - 1).flip(0).cummin(0).values.flip(0)  # (N, K)
    return first, last


def _columns(scores: Tensor, positive: Tensor) -> tuple[Tensor, Tensor, bool]:
    """(N,) or (N, K) inputs as (N, K) float scores and boolean truths, and whether they were one column."""
    one = scores.ndim == 1
    scores, positive = (scores.unsqueeze(1), positive.unsqueeze(1)) if one else (scores, positive)
    return scores.float(), positive.bool(), one


def auroc(scores: Tensor, positive: Tensor) -> Tensor:
    """Area under the ROC curve of each column of (N, K) scores against (N, K) truths (or of (N,) inputs).

    Ties share their mean rank (a tie between a positive and a negative counts half), which is the trapezoid
    over one threshold per distinct score. A column with only positives or only negatives scores 0.
    """
    scores, positive, one = _columns(scores, positive)
    ordered, order = scores.sort(dim=0)  # (N, K) ascending
    first, last = _runs(ordered)
    hits = positive.gather(0, order)  # (N, K) truths in score order
    n_pos = hits.sum(0)  # (K,)
    n_neg = hits.shape[0] - n_pos  # (K,)
    twice_u = ((first + last + 2) * hits).sum(0) - n_pos * (n_pos + 1)  # (K,) 2 x Mann-Whitney U (mid-ranks)
    area = _ratio(twice_u.double(), 2 * n_pos * n_neg).float()  # (K,) 0 when n_pos or n_neg is 0
    return area[0] if one else area


def multiclass_auroc(proba: Tensor, target: Tensor) -> Tensor:
    """Macro mean over the classes of one-vs-rest AUROC; (N, K) scores, (N,) class indices.

    As in torchmetrics, a class absent from `target` scores 0 and is kept in the mean.
    """
    classes = torch.arange(proba.shape[1], device=target.device)  # (K,)
    return auroc(proba, target.long().unsqueeze(1) == classes).mean()


def average_precision(scores: Tensor, positive: Tensor) -> Tensor:
    """Average precision of each column of (N, K) scores against (N, K) truths (or of (N,) inputs).

    The mean over the positive records of the precision at the threshold of their score (tied records all
    above it); 0 for a column without a positive.
    """
    scores, positive, one = _columns(scores, positive)
    ordered, order = scores.sort(dim=0, descending=True)  # (N, K)
    hits = positive.gather(0, order)  # (N, K) truths in score order
    _, last = _runs(ordered)
    precision = hits.cumsum(0).gather(0, last) / (last + 1)  # (N, K) at the end of each record's tie run
    ap = _ratio((precision * hits).sum(0), hits.sum(0))  # (K,)
    return ap[0] if one else ap


def mean_absolute_error(pred: Tensor, true: Tensor) -> Tensor:
    return (pred.float() - true.float()).abs().mean()


def mean_squared_error(pred: Tensor, true: Tensor) -> Tensor:
    return (pred.float() - true.float()).pow(2).mean()


def r2_score(pred: Tensor, true: Tensor) -> Tensor:
    """Coefficient of determination of (N,) or (N, K) predictions, the mean over the K outputs.

    As in torchmetrics, sums of squares within 1e-4 of 0 count as 0: a perfect fit scores 1, a constant target
    missed scores 0. Fewer than two records: NaN (torchmetrics raises).
    """
    pred, true = pred.float(), true.float()
    if true.shape[0] < 2:
        return torch.tensor(float("nan"), device=true.device)
    rss = (true - pred).pow(2).sum(0)  # (K,) or ()
    tss = (true - true.mean(0)).pow(2).sum(0)
    has_rss, has_tss = rss.abs() > 1e-4, tss.abs() > 1e-4
    score = torch.where(has_rss & has_tss, 1 - rss / torch.where(has_tss, tss, 1.0), torch.ones_like(rss))
    return torch.where(has_rss & ~has_tss, torch.zeros_like(score), score).mean()


def pearson(pred: Tensor, true: Tensor) -> Tensor:
    """Pearson correlation of (N,) inputs, or of each column of (N, K) inputs ((K,) out).

    NaN where it is not defined, by torchmetrics' rule: fewer than two records, or a variance below
    sqrt(machine epsilon) after scaling each input by its largest absolute deviation from the mean.
    """
    x, y = pred.float(), true.float()
    x, y = x - x.mean(0), y - y.mean(0)  # centered
    n = x.shape[0]
    dx, dy = x.abs().amax(0) if n else x.sum(0), y.abs().amax(0) if n else y.sum(0)  # largest deviations
    var_x = x.pow(2).sum(0) / (n - 1) / dx.pow(2)
    var_y = y.pow(2).sum(0) / (n - 1) / dy.pow(2)
    cov = (x * y).sum(0) / (n - 1) / (dx * dy)
    bound = math.sqrt(torch.finfo(var_x.dtype).eps)
    bad = (var_x < bound) | (var_y < bound) | ~var_x.isfinite() | ~var_y.isfinite() | ~cov.isfinite()
    r = (cov / (var_x * var_y).sqrt()).clamp(-1.0, 1.0)
    return torch.where(bad, torch.full_like(r, float("nan")), r)
