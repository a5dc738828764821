"""Ensemble selection on validation: Caruana-style greedy selection with replacement (Caruana et al., ICML
2004), and its bagged form (Caruana et al., ICDM 2006), which averages the weights selected on bootstrap
samples of the records so that a few lucky records cannot decide the mixture."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

import torch
from torch import Tensor


def greedy_ensemble(probs: Mapping[str, Tensor], score: Callable[[Tensor], float],
                    rounds: int = 25) -> tuple[dict[str, float], float]:
    """Weights (member -> fraction of picks) of the best ensemble seen while adding, each round, the member
    whose addition scores best (members may be picked again); and that ensemble's score. The first round
    picks the best single member, so the result never scores below it."""
    counts: Counter[str] = Counter()
    total: Tensor | None = None
    best: tuple[float, dict[str, float]] = (float("-inf"), {})
    for r in range(1, rounds + 1):
        trials = {m: p if total is None else total + p for m, p in probs.items()}
        name = max(trials, key=lambda m: score(trials[m] / r))
        counts[name] += 1
        total = trials[name]
        value = score(total / r)
        if value > best[0]:
            best = (value, {m: c / r for m, c in counts.items()})
    return best[1], best[0]


def bagged_ensemble(probs: Mapping[str, Tensor], score: Callable[[Tensor, Tensor], float], bags: int = 20,
                    rounds: int = 25, seed: int = 0) -> dict[str, float]:
    """The mean of the greedy weights selected on `bags` bootstrap samples of the records.

    Args:
        probs: per member, (N, K) probabilities of the same N records.
        score: (probabilities of some records, their indices) -> score; higher is better.
    """
    n = next(iter(probs.values())).shape[0]
    generator = torch.Generator().manual_seed(seed)
    total: Counter[str] = Counter()
    for _ in range(bags):
        rows = torch.randint(0, n, (n,), generator=generator)  # (N,) drawn with replacement
        weights, _ = greedy_ensemble({m: p[rows] for m, p in probs.items()}, lambda p: score(p, rows), rounds)
        total.update({m: w / bags for m, w in weights.items()})
    return {m: w for m, w in total.items() if w > 0}
