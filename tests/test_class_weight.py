"""target.class_weight: balanced weighs rare classes up in the loss of binary and multiclass tasks."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from polymodal.apps.fit import class_weight
from polymodal.config import TargetConfig
from polymodal.tasks import build_task
from polymodal.tasks.base import balanced_weights


def test_balanced_weights_are_inverse_frequency_and_capped() -> None:
    assert balanced_weights([6, 2], cap=10) == pytest.approx([8 / 12, 2.0])
    assert balanced_weights([99, 1], cap=5) == pytest.approx([100 / 198, 5.0])


@pytest.mark.parametrize("task", ["multiclass", "binary"])
def test_balanced_loss_counts_rare_class_more(task: str) -> None:
    labels = ["a"] * 9 + ["b"]
    plain = build_task(TargetConfig(field="y", task=task))
    weighted = build_task(TargetConfig(field="y", task=task, class_weight="balanced"))
    plain.fit(labels)
    weighted.fit(labels)
    logits = torch.zeros(2, plain.num_outputs)
    logits[:, 0] = 2.0  # confident in "a" (multiclass) / in "b" (binary: the logit of the second class)
    target = torch.tensor([0, 1])
    wrong = 1 if task == "multiclass" else 0  # the record the logits get wrong
    ratio = weighted.loss(logits, target) / plain.loss(logits, target)
    # the mistake on the rare class (multiclass) or common class (binary) gets the larger / smaller share
    assert (ratio > 1) == (wrong == 1)
    assert weighted.state()["class_weights"] == pytest.approx([10 / 18, 5.0])
    assert "class_weights" not in plain.state()


def test_class_weight_only_for_classification() -> None:
    with pytest.raises(ValueError, match="class_weight"):
        TargetConfig(field="y", task="regression", class_weight="balanced")


def test_fit_weighs_classes_when_imbalanced() -> None:
    assert class_weight(pd.Series(["a"] * 6 + ["b"] * 2)) == "balanced"
    assert class_weight(pd.Series(["a"] * 5 + ["b"] * 4)) == "none"
