"""Metrics that a collapsed or constant model must not score well on: ties count against the prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polymodal.config import TargetConfig
from polymodal.tasks import build_task, precision_at_k, retrieval_metrics, retrieval_ranks


def test_collapsed_embedding_ranks_every_match_last() -> None:
    z = torch.nn.functional.normalize(torch.ones(20, 8), dim=1)  # every record embeds to the same point
    assert retrieval_ranks(z @ z.T).tolist() == [20] * 20
    m = retrieval_metrics(z @ z.T, "a_to_b")
    assert m["a_to_b_r1"] == m["a_to_b_r5"] == m["a_to_b_r10"] == 0.0
    assert m["a_to_b_median_rank"] == 20


def test_collapsed_epoch_is_never_the_best_checkpoint() -> None:
    task = build_task(TargetConfig(task="retrieval"))
    torch.manual_seed(0)
    random = {m: torch.nn.functional.normalize(torch.randn(32, 8), dim=1) for m in ("a", "b")}
    collapsed = {m: torch.nn.functional.normalize(torch.ones(32, 8), dim=1) for m in ("a", "b")}
    chance = task.metrics(torch.zeros(32, 0), None, random)["mean_recall"]
    assert task.metrics(torch.zeros(32, 0), None, collapsed)["mean_recall"] == 0.0 < chance


def test_a_tie_with_one_other_candidate_costs_one_rank() -> None:
    sim = torch.eye(3)
    sim[0, 1] = 1.0  # query 0: candidate 1 ties with the match
    assert retrieval_ranks(sim).tolist() == [2, 1, 1]


def test_median_rank_as_open_clip() -> None:
    ranks = [1, 1, 1, 2, 3, 6, 8, 9, 10, 10]  # middle ranks 3 and 6
    sim = -torch.ones(10, 10)
    for i, r in enumerate(ranks):  # query i: r - 1 other candidates above its match
        sim[i, i] = 0.0
        sim[i, [j for j in range(10) if j != i][: r - 1]] = 1.0
    assert retrieval_ranks(sim).tolist() == ranks
    open_clip = float(np.floor(np.median(np.array(ranks) - 1)) + 1)  # open_clip's formula on 0-based ranks
    assert retrieval_metrics(sim, "q")["q_median_rank"] == open_clip == 4.0


def test_precision_at_k_ties_count_against_the_record() -> None:
    target = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 1, 1]])
    constant = torch.full((3, 3), 0.5)  # a constant model: every label tied
    assert precision_at_k(constant, target, 1) == 0.0  # not 2/3 by the vocabulary's order
    assert precision_at_k(constant, target, 2) == pytest.approx((0 + 0 + 1) / 6)
    ranked = torch.tensor([[0.9, 0.5, 0.5], [0.9, 0.5, 0.5], [0.1, 0.9, 0.8]])  # ties only below the top label
    assert precision_at_k(ranked, target, 1) == 1.0
