"""k-fold cross-fitting of a cheap (scikit-learn) model over train + validation.

Every setting of a small grid is fitted k times, each time on all records but one fold and scored on that
fold, which gives an out-of-fold (OOF) prediction for every train and validation record. The setting whose OOF
predictions score best is refitted on train + validation. Choosing on a few hundred OOF records over-fits far
less than choosing on a validation split of a few dozen, and the refit sees every labelled record.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polymodal.ensemble.classical import ABSENT, fractions_to_logits

FOLDS = 5


@dataclass
class CrossFit:
    """The chosen setting, the model refitted on every record, and its out-of-fold logits (N, K)."""

    setting: Any
    model: Any
    oof: Tensor
    score: float


class PerLabel:
    """Multilabel: one binary classifier per label column of Y (N, L); a label with one value in the records
    it is fitted on gets a constant logit. `coef_` (L, F) and `intercept_` (L,) are the linear members' own
    (constant labels: zero weights), so a linear per-label model copies into one linear layer."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make

    def fit(self, x: Any, y: np.ndarray) -> PerLabel:
        self.models = [self.make().fit(x, y[:, j]) if len(np.unique(y[:, j])) > 1 else float(y[0, j])
                       for j in range(y.shape[1])]
        return self

    def decision_function(self, x: Any) -> np.ndarray:
        cols = [np.full(x.shape[0], ABSENT if m == 0 else -ABSENT) if isinstance(m, float)
                else m.decision_function(x) for m in self.models]
        return np.stack(cols, axis=1).astype(np.float32)  # (N, L)

    @property
    def coef_(self) -> np.ndarray:
        width = next(m.coef_.shape[1] for m in self.models if not isinstance(m, float))
        return np.stack([np.zeros(width) if isinstance(m, float) else m.coef_[0] for m in self.models])

    @property
    def intercept_(self) -> np.ndarray:
        return np.asarray([(ABSENT if m == 0 else -ABSENT) if isinstance(m, float) else m.intercept_[0]
                           for m in self.models])


def as_logits(model: Any, x: Any, num_outputs: int) -> Tensor:
    """A fitted classifier's decision function in the task's logit layout: (N, 1) for binary, (N, K)
    otherwise, with the columns of classes the model never saw set to a very low logit (a forest: its class
    fractions as log-probabilities, see `fractions_to_logits`). A regressor's
    predictions become (N, 1)."""
    if isinstance(model, PerLabel):
        return torch.from_numpy(model.decision_function(x))
    if not hasattr(model, "classes_"):
        return torch.from_numpy(np.asarray(model.predict(x), dtype=np.float32)).reshape(-1, 1)
    classes = np.asarray(model.classes_)
    if not hasattr(model, "decision_function"):  # a forest: class fractions
        fractions = torch.from_numpy(np.asarray(model.predict_proba(x), dtype=np.float32))
        return fractions_to_logits(fractions, classes.tolist(), num_outputs)
    if len(classes) == 1:  # a fold with one class: certain of it
        out = np.full((x.shape[0], max(num_outputs, 2)), ABSENT, dtype=np.float32)
        out[:, classes[0]] = -ABSENT
        return torch.from_numpy(out[:, 1:] - out[:, :1] if num_outputs == 1 else out)
    decision = np.asarray(model.decision_function(x), dtype=np.float32)
    if num_outputs == 1:
        return torch.from_numpy(decision).reshape(-1, 1)
    if decision.ndim == 1:  # two classes seen (of more): one decision, the second class's log-odds
        decision = np.stack([-decision / 2, decision / 2], axis=1)
    out = np.full((x.shape[0], num_outputs), ABSENT, dtype=np.float32)
    out[:, classes] = decision
    return torch.from_numpy(out)


def folds(y: np.ndarray, k: int, seed: int, classify: bool) -> list[np.ndarray]:
    """Indices of each of k folds, stratified by class for classification."""
    from sklearn.model_selection import KFold, StratifiedKFold

    splitter = StratifiedKFold(k, shuffle=True, random_state=seed) if classify else KFold(
        k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "the least populated class has fewer members than n_splits"
        warnings.simplefilter("ignore", UserWarning)
        return [test for _, test in splitter.split(np.zeros(len(y)), y)]


def cross_fit(make: Callable[[Any], Any], grid: Sequence[Any], x: Any, y: np.ndarray, num_outputs: int,
              score: Callable[[Tensor], float], classify: bool = True, k: int = FOLDS, seed: int = 0,
              warm: bool = False) -> CrossFit:
    """Choose the setting of `grid` whose out-of-fold logits on (x, y) score best; refit it on all of x.

    `warm`: within a fold, each setting after the first refits the previous setting's model with the new
    parameters (`set_params`), starting from its solution (`make` builds models with `warm_start=True`); for a
    convex model this only saves iterations."""
    parts = folds(y, min(k, len(y)), seed, classify)
    oofs = [torch.zeros(len(y), num_outputs) for _ in grid]
    for test in parts:
        train = np.setdiff1d(np.arange(len(y)), test)
        model = None
        for i, setting in enumerate(grid):
            model = model.set_params(**setting) if warm and model is not None else make(setting)
            oofs[i][test] = as_logits(model.fit(x[train], y[train]), x[test], num_outputs)
    scores = [score(oof) for oof in oofs]
    best = max(range(len(grid)), key=lambda i: (scores[i], -i))  # the first of equal scores
    return CrossFit(grid[best], make(grid[best]).fit(x, y), oofs[best], scores[best])
