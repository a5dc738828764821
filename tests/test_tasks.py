from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polymodal.config import TargetConfig
from polymodal.errors import RecordError
from polymodal.tasks import build_task


def task(name: str, field: str | list[str] = "y"):  # type: ignore[no-untyped-def]
    return build_task(TargetConfig(field=field, task=name))


def test_multiclass_encode_metrics_and_errors() -> None:
    t = task("multiclass")
    t.fit([2, 10, 1, 2.0])
    assert t.classes == ["1", "2", "10"]  # numeric labels sorted as numbers; 2.0 is the label 2
    assert int(t.encode(10)) == 2
    with pytest.raises(RecordError, match="empty or NaN"):
        t.encode(float("nan"))
    with pytest.raises(RecordError, match="'7' does not occur in the training split"):
        t.encode(7)
    logits = torch.tensor([[3.0, 0, 0], [0, 3.0, 0], [0, 3.0, 0], [0, 0, 3.0]])
    target = torch.tensor([0, 1, 2, 2])
    m = t.metrics(logits, target)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert t.predict(logits) == ["1", "2", "2", "10"]
    assert t.confusion(logits, target).tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert np.allclose(sum(t.proba(logits).values()), 1.0)


def test_binary_needs_two_classes_and_scores() -> None:
    t = task("binary")
    with pytest.raises(RecordError, match="use task: multiclass"):
        t.fit(["a", "b", "c"])
    t.fit(["no", "yes", "no"])
    logits = torch.tensor([[2.0], [-2.0], [1.0]])
    target = torch.tensor([1, 0, 0])
    assert t.predict(logits) == ["yes", "no", "yes"]
    assert t.metrics(logits, target)["accuracy"] == pytest.approx(2 / 3)
    assert t.loss(logits, target).item() > 0


def test_binary_metrics_and_confusion_decide_as_predict_does() -> None:
    t = task("binary")
    t.fit(["no", "yes"])
    logits = torch.tensor([[1e-8], [-1e-8]])  # a float32 sigmoid rounds both to exactly 0.5
    assert t.predict(logits) == ["yes", "no"]
    assert t.metrics(logits, torch.tensor([1, 0]))["accuracy"] == 1.0
    assert t.confusion(logits, torch.tensor([1, 0])).tolist() == [[1, 0], [0, 1]]


def test_multilabel_from_separated_cells() -> None:
    t = task("multilabel")
    t.fit(["cat|dog", "dog", float("nan"), "bird"])
    assert t.classes == ["bird", "cat", "dog"]
    assert t.encode("dog|cat").tolist() == [0, 1, 1]
    assert t.encode(float("nan")).tolist() == [0, 0, 0]
    with pytest.raises(RecordError, match="'fish'"):
        t.encode("fish")
    logits = torch.tensor([[5.0, -5, 5], [-5, 5, -5]])
    assert t.predict(logits) == ["bird|dog", "cat"]
    perfect = t.metrics(logits, torch.tensor([[1.0, 0, 1], [0, 1, 0]]))
    assert perfect["micro_f1"] == pytest.approx(1.0) and perfect["map"] == pytest.approx(1.0)


def test_regression_standardizes_and_reports_in_units() -> None:
    t = task("regression")
    t.fit([1.0, 3.0, float("nan"), "oops"])
    assert t.mean == [2.0] and t.std == [1.0]
    assert t.encode(5.0).tolist() == [3.0]
    with pytest.raises(RecordError, match="not a number"):
        t.encode("oops")
    pred = torch.tensor([[0.0], [1.0], [-1.0]])
    true = torch.tensor([[0.0], [1.0], [0.0]])
    m = t.metrics(pred, true)
    assert m["mae"] == pytest.approx(1 / 3) and m["rmse"] == pytest.approx(math.sqrt(1 / 3))
    assert t.predict(pred) == [2.0, 3.0, 1.0]


def test_multi_output_regression() -> None:
    t = task("regression", ["a", "b"])
    t.fit([[0.0, 10.0], [2.0, 30.0]])
    assert t.num_outputs == 2 and t.encode([1.0, 20.0]).tolist() == [0.0, 0.0]
