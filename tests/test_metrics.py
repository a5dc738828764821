"""polymodal.metrics against torchmetrics (a test dependency only): same numbers on random inputs and on the edge
cases (one class only, a class missing, ties, a label never positive), and no torchmetrics at run time."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

from polymodal import metrics

tm = pytest.importorskip("torchmetrics.functional")

SEEDS = range(6)


def close(ours: torch.Tensor, theirs: torch.Tensor, tol: float = 1e-5) -> bool:
    """Equal within tol, NaN where the other is NaN."""
    ours, theirs = ours.float(), theirs.float()
    return ours.shape == theirs.shape and bool(torch.allclose(ours, theirs, atol=tol, rtol=tol, equal_nan=True))


def reference(fn, *args, **kwargs) -> torch.Tensor:  # noqa: ANN001 (a torchmetrics function)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns on the edge cases this file is about
        return fn(*args, **kwargs)


def classes(seed: int, n: int, k: int, missing: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, k) logits rounded to one decimal (many ties) and (n,) targets, class `missing` never present."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, k, generator=g) * 2).round(decimals=1)
    target = torch.randint(0, k, (n,), generator=g)
    if missing is not None:
        target[target == missing] = (missing + 1) % k
    return logits, target


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k,missing", [(2, None), (4, None), (5, 3), (3, 0)])
def test_multiclass_accuracy_f1_auroc_confusion(seed: int, k: int, missing: int | None) -> None:
    logits, target = classes(seed, 40, k, missing)
    decided = logits.argmax(1)
    proba = logits.softmax(1)
    assert close(metrics.accuracy(decided, target), tm.accuracy(logits, target, task="multiclass", num_classes=k))
    for average in ("macro", "weighted"):
        theirs = tm.f1_score(logits, target, task="multiclass", num_classes=k, average=average)
        assert close(metrics.f1_score(decided, target, k, average=average), theirs), average
    theirs = reference(tm.auroc, proba, target, task="multiclass", num_classes=k)
    assert close(metrics.multiclass_auroc(proba, target), theirs)
    assert torch.equal(metrics.confusion_matrix(decided, target, k),
                       tm.confusion_matrix(logits, target, task="multiclass", num_classes=k))


def test_macro_f1_leaves_out_a_class_neither_predicted_nor_present() -> None:
    predicted, target = torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 0, 0])
    ours = metrics.f1_score(predicted, target, 3)  # class 2 never occurs
    assert ours == pytest.approx((0.8 + 2 / 3) / 2)
    assert close(ours, tm.f1_score(predicted, target, task="multiclass", num_classes=3, average="macro"))


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_auroc_with_ties(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 5, (50,), generator=g).float() / 4  # five distinct values: ties everywhere
    target = torch.randint(0, 2, (50,), generator=g)
    assert close(metrics.auroc(scores, target.bool()), tm.auroc(scores, target, task="binary"))


@pytest.mark.parametrize("target", [torch.zeros(6, dtype=torch.long), torch.ones(6, dtype=torch.long)])
def test_auroc_of_a_single_class_is_zero_as_in_torchmetrics(target: torch.Tensor) -> None:
    scores = torch.linspace(0, 1, 6)
    theirs = reference(tm.auroc, scores, target, task="binary")
    assert close(metrics.auroc(scores, target.bool()), theirs) and float(theirs) == 0.0


@pytest.mark.parametrize("label", [0, 1])
def test_one_record(label: int) -> None:
    score, target = torch.tensor([0.7]), torch.tensor([label])
    assert close(metrics.auroc(score, target.bool()), reference(tm.auroc, score, target, task="binary"))
    assert close(metrics.average_precision(score, target.bool()),
                 reference(tm.average_precision, score, target, task="binary"))


def test_constant_scores_give_auroc_one_half() -> None:
    target = torch.tensor([0, 1, 1, 0, 1])
    assert metrics.auroc(torch.full((5,), 0.3), target.bool()).item() == pytest.approx(0.5)


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_task_metrics_match_torchmetrics(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    p = torch.sigmoid((torch.randn(40, generator=g) * 2).round(decimals=1))
    target = torch.randint(0, 2, (40,), generator=g)
    decided = (p > 0.5).long()
    assert close(metrics.accuracy(decided, target), tm.accuracy(p, target, task="binary"))
    two = torch.stack([1 - p, p], 1)
    assert close(metrics.f1_score(decided, target, 2),
                 tm.f1_score(two, target, task="multiclass", num_classes=2, average="macro"))
    assert torch.equal(metrics.confusion_matrix(decided, target, 2), tm.confusion_matrix(p, target, task="binary"))


def labels(seed: int, n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, k) probabilities with ties and (n, k) truths in which label 1 is never positive."""
    g = torch.Generator().manual_seed(seed)
    p = torch.randint(0, 9, (n, k), generator=g).float() / 8
    target = (torch.rand(n, k, generator=g) < 0.4).long()
    target[:, 1] = 0
    p[:, 1] /= 2  # never above 0.5: label 1 is neither positive nor predicted
    return p, target


@pytest.mark.parametrize("seed", SEEDS)
def test_multilabel_f1_and_average_precision(seed: int) -> None:
    p, target = labels(seed, 30, 5)
    for average in ("micro", "macro"):  # macro keeps the never-positive label, as torchmetrics
        theirs = tm.f1_score(p, target, task="multilabel", num_labels=5, average=average)
        assert close(metrics.multilabel_f1(p > 0.5, target.bool(), average=average), theirs), average
    theirs = reference(tm.average_precision, p, target, task="multilabel", num_labels=5, average=None)
    assert close(metrics.average_precision(p, target.bool()), theirs)
    assert metrics.average_precision(p, target.bool())[1] == 0.0  # no positive
    assert close(metrics.average_precision(p[:, 0], target[:, 0].bool()),
                 tm.average_precision(p[:, 0], target[:, 0], task="binary"))


def test_multilabel_f1_with_nothing_positive_or_predicted_is_zero() -> None:
    nothing = torch.zeros(4, 3, dtype=torch.bool)
    for average in ("micro", "macro"):
        theirs = tm.f1_score(nothing.float(), nothing.long(), task="multilabel", num_labels=3, average=average)
        assert close(metrics.multilabel_f1(nothing, nothing, average=average), theirs) and float(theirs) == 0.0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [1, 3])
def test_regression_metrics(seed: int, k: int) -> None:
    g = torch.Generator().manual_seed(seed)
    true = torch.randn(25, k, generator=g) * 3 + 1
    pred = true + torch.randn(25, k, generator=g)
    assert close(metrics.mean_absolute_error(pred, true), tm.mean_absolute_error(pred, true))
    assert close(metrics.mean_squared_error(pred, true), tm.mean_squared_error(pred, true))
    assert close(metrics.r2_score(pred, true), tm.r2_score(pred, true), tol=1e-4)
    theirs = tm.pearson_corrcoef(pred, true)
    assert close(metrics.pearson(pred, true).reshape(theirs.shape), theirs)
    assert close(metrics.pearson(pred[:, 0], true[:, 0]), tm.pearson_corrcoef(pred[:, 0], true[:, 0]))


@pytest.mark.parametrize("case", ["perfect", "constant target", "constant prediction"])
def test_regression_edge_cases(case: str) -> None:
    true = torch.tensor([1.0, 2.0, 4.0, 3.0])
    pred = {"perfect": true, "constant target": torch.tensor([1.0, 2.0, 3.0, 5.0]),
            "constant prediction": torch.full((4,), 2.5)}[case]
    if case == "constant target":
        true = torch.full((4,), 2.0)
    assert close(metrics.r2_score(pred, true), tm.r2_score(pred, true))
    theirs = reference(tm.pearson_corrcoef, pred, true)
    assert close(metrics.pearson(pred, true), theirs)


def test_one_record_gives_nan_where_torchmetrics_cannot_tell() -> None:
    one = torch.tensor([1.5])
    assert torch.isnan(metrics.r2_score(one, one)) and torch.isnan(metrics.pearson(one, one))


def test_task_metrics_are_finite_on_a_split_with_one_class_present() -> None:
    from polymodal.config import TargetConfig
    from polymodal.tasks import build_task

    task = build_task(TargetConfig(field="y", task="multiclass"))
    task.fit(["a", "b", "c"])
    values = task.metrics(torch.randn(6, 3), torch.zeros(6, dtype=torch.long))
    assert all(v == v for v in values.values()), values  # no NaN


def test_computing_task_metrics_imports_no_torchmetrics() -> None:
    code = ("import sys, torch\n"
            "from polymodal.config import TargetConfig\n"
            "from polymodal.tasks import build_task\n"
            "for kind, classes, target in [('multiclass', ['a', 'b', 'c'], torch.tensor([0, 1, 2, 1])),\n"
            "                              ('binary', ['a', 'b'], torch.tensor([0, 1, 1, 0]))]:\n"
            "    t = build_task(TargetConfig(field='y', task=kind)); t.fit(classes)\n"
            "    t.metrics(torch.randn(4, t.num_outputs), target); t.confusion(torch.randn(4, t.num_outputs), target)\n"
            "r = build_task(TargetConfig(field='y', task='regression')); r.fit([1.0, 2.0, 3.0])\n"
            "r.metrics(torch.randn(4, 1), torch.randn(4, 1))\n"
            "m = build_task(TargetConfig(field='y', task='multilabel')); m.fit(['a|b', 'b'])\n"
            "m.metrics(torch.randn(4, 2), torch.tensor([[1., 0.], [0., 1.], [1., 1.], [0., 0.]]))\n"
            "heavy = {'torchmetrics', 'scipy', 'transformers', 'matplotlib'} & {n.split('.')[0] for n in sys.modules}\n"
            "print(' '.join(sorted(heavy)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
