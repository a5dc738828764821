"""Caruana-style greedy ensemble selection with replacement (Caruana et al., ICML 2004) on validation."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

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
