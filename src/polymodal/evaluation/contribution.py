"""Modality contribution: ablation, Shapley values (data set and per record) and interactions of modalities.

The game: the players are the run's modalities; a coalition S is scored by running the model on the data with
every modality not in S marked missing (`Batch.without`), which each fusion handles through its presence masks.
One forward pass over the data per coalition, cached, serves the data-set score and every record's value.

- Data-set value v(S): the task's main metric (`task.monitor`) on the data. Metrics where lower is better
  (`task.mode == "min"`, e.g. rmse) are negated, so that in every value, Shapley value and interaction a
  positive number means "helps". `ablation` reports the metrics themselves, unsigned.
- Record value v_r(S): how strongly the model holds, under S, the prediction it makes with every modality:
  the probability of the class it predicts with all modalities (binary, multiclass); the mean probability of
  the labels it predicts with all modalities (multilabel; the most probable one where it predicts none); the
  predicted value in the data's units (regression; the first target where there are several).

Shapley values are exact (all 2^N coalitions) for N <= `EXACT_UP_TO` modalities and sampled over random
permutations above; either way they add up to v(all) - v(empty) (efficiency).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, combinations
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from polymodal.data.dataset import MultimodalDataset, decode, raise_on_fatal
from polymodal.data.sources import load_splits
from polymodal.evaluation.inference import output_metrics, predict_outputs
from polymodal.output import Output
from polymodal.rundir import Run
from polymodal.tasks import Multilabel, Task

EXACT_UP_TO = 6

Coalition = frozenset[str]
V = TypeVar("V", float, np.ndarray)


# ---------------------------------------------------------------------------------------------- Shapley values


def coalitions(players: Iterable[str]) -> list[Coalition]:
    """Every subset of `players`, smallest first."""
    p = list(players)
    return [frozenset(c) for c in chain.from_iterable(combinations(p, k) for k in range(len(p) + 1))]


def shapley(values: Mapping[Coalition, V], players: Sequence[str]) -> dict[str, V]:
    """Exact Shapley values: phi_i = sum over S not holding i of |S|! (n-|S|-1)! / n! * (v(S + i) - v(S)).

    `values` holds v for every subset of `players` (floats, or arrays to get one value per record at once).
    """
    n = len(players)
    out: dict[str, V] = {}
    for i in players:
        others = [p for p in players if p != i]
        out[i] = sum(math.factorial(len(s)) * math.factorial(n - len(s) - 1) / math.factorial(n)
                     * (values[s | {i}] - values[s]) for s in coalitions(others))  # type: ignore[assignment]
    return out


def shapley_sampled(value_fn: Callable[[Coalition], V], players: Sequence[str], permutations: int = 200,
                    seed: int = 0) -> dict[str, V]:
    """Monte Carlo Shapley values: each player's mean marginal gain over random orders of the players.

    Each order adds the players one by one, so the estimates still sum exactly to v(all) - v(empty); they are
    unbiased, with an error that shrinks as 1/sqrt(permutations). `value_fn` is called once per distinct
    coalition met.
    """
    rng = np.random.default_rng(seed)
    cache: dict[Coalition, V] = {}

    def v(s: Coalition) -> V:
        if s not in cache:
            cache[s] = value_fn(s)
        return cache[s]

    totals: dict[str, Any] = {p: 0.0 for p in players}
    for _ in range(permutations):
        s: Coalition = frozenset()
        for k in rng.permutation(len(players)):
            grown = s | {players[k]}
            totals[players[k]] = totals[players[k]] + (v(grown) - v(s))
            s = grown
    return {p: t / permutations for p, t in totals.items()}


def shapley_interactions(values: Mapping[Coalition, float], players: Sequence[str]) -> dict[tuple[str, str], float]:
    """Shapley interaction index of every pair (Grabisch and Roubens 1999), exact over all coalitions.

    I_ij = sum over S holding neither of |S|! (n-|S|-2)! / (n-1)! * (v(S+i+j) - v(S+i) - v(S+j) + v(S)):
    positive where i and j are worth more together than apart (synergy), negative where they carry the same
    information (redundancy), zero where their effects add up.
    """
    n = len(players)
    out: dict[tuple[str, str], float] = {}
    for i, j in combinations(players, 2):
        rest = [p for p in players if p not in (i, j)]
        out[(i, j)] = float(sum(
            math.factorial(len(s)) * math.factorial(n - len(s) - 2) / math.factorial(n - 1)
            * (values[s | {i, j}] - values[s | {i}] - values[s | {j}] + values[s]) for s in coalitions(rest)))
    return out


def interaction_summary(values: Mapping[Coalition, float], players: Sequence[str] | None = None) -> dict[str, float]:
    """How much of the score needs modalities together versus what each one carries alone.

    `values` are coalition values where higher is better (the empty coalition, each single player and the
    full set are needed; `players` defaults to the largest coalition in `values`):
    - sum_of_unimodal_gains: sum over i of v({i}) - v({}), what each modality achieves alone;
    - joint_gain: v(all) - v({}), what all of them achieve together;
    - synergy: joint_gain - sum_of_unimodal_gains. Positive: the modalities are worth more together than the
      sum of their parts (complementary; an XOR needs both). Negative: they overlap, so together they add less
      than their solo gains suggest (redundant). Zero: their gains add up.
    """
    full = frozenset(players) if players is not None else max(values, key=len)
    empty = values[frozenset()]
    unimodal = sum(values[frozenset({p})] - empty for p in full)
    joint = values[full] - empty
    return {"sum_of_unimodal_gains": float(unimodal), "joint_gain": float(joint), "synergy": float(joint - unimodal)}


# --------------------------------------------------------------------------------------- the game of one run


def _probabilities(task: Task, out: Output) -> np.ndarray | None:
    """(N, K) class probabilities in `task.classes` order, or None for a task without classes (regression)."""
    proba = task.proba(out.logits)
    return np.stack([np.asarray(p, dtype=np.float64) for p in proba.values()], axis=1) if proba else None


def _record_values(task: Task, out: Output, reference: np.ndarray | None) -> np.ndarray:
    """(N,) record values under one coalition (see the module docstring); `reference` is the full coalition's
    probabilities."""
    p = _probabilities(task, out)
    if p is None or reference is None:
        pred = np.asarray(task.predict(out.logits), dtype=np.float64)
        return pred.reshape(len(pred), -1)[:, 0]
    if isinstance(task, Multilabel):
        on = reference > 0.5  # (N, K)
        on[np.arange(len(on)), reference.argmax(axis=1)] |= ~on.any(axis=1)
        return (p * on).sum(axis=1) / on.sum(axis=1)
    return p[np.arange(len(p)), reference.argmax(axis=1)]


@dataclass
class _Scored:
    metrics: dict[str, float]
    records: np.ndarray


@dataclass
class CoalitionGame:
    """A run's scores on one data set with only the modalities of a coalition present, cached per coalition.

    Args:
        run: a loaded run (its model is used on the device it is on).
        dataset: decoded records; without targets only record values are available.
        batch_size: records per forward pass.
    """

    run: Run
    dataset: MultimodalDataset
    batch_size: int = 256
    _cache: dict[Coalition, _Scored] = field(default_factory=dict, repr=False)
    _reference: np.ndarray | None = field(default=None, repr=False)
    _predictions: list[Any] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.run.task.num_outputs == 0:
            raise ValueError(f"modality contribution needs a task head; a {self.run.task.name} run has none")
        if not self.run.task.scalar_predictions:
            raise ValueError(f"modality contribution needs class or numeric predictions; a {self.run.task.name} run "
                             "generates text (compare its metrics with modalities missing instead: "
                             "Predictor.outputs(records, drop={...}))")

    @property
    def players(self) -> tuple[str, ...]:
        return tuple(self.run.model.modalities)

    @property
    def full(self) -> Coalition:
        return frozenset(self.players)

    @property
    def task(self) -> Task:
        return self.run.task

    @property
    def sign(self) -> float:
        """+1 where the main metric is maximized, -1 where it is minimized."""
        return -1.0 if self.task.mode == "min" else 1.0

    def _scored(self, coalition: Coalition) -> _Scored:
        if coalition not in self._cache:
            if coalition != self.full and self._reference is None:
                self._scored(self.full)
            out, target = predict_outputs(self.run.model, self.run.processors, self.dataset, self.batch_size,
                                          drop=self.full - coalition)
            if coalition == self.full:
                self._reference = _probabilities(self.task, out)
                self._predictions = list(self.task.predict(out.logits))
            metrics = {} if target is None else output_metrics(self.task, out, target)
            self._cache[coalition] = _Scored(metrics, _record_values(self.task, out, self._reference))
        return self._cache[coalition]

    def metrics(self, coalition: Iterable[str]) -> dict[str, float]:
        """Every metric of the task (as the task reports them) with only `coalition` present."""
        scored = self._scored(frozenset(coalition))
        if not scored.metrics:
            raise ValueError("the data set has no targets: only record values (record_values) can be computed")
        return scored.metrics

    def value(self, coalition: Iterable[str]) -> float:
        """The main metric with only `coalition` present, negated for metrics where lower is better."""
        return self.sign * self.metrics(coalition)[self.task.monitor]

    def record_values(self, coalition: Iterable[str]) -> np.ndarray:
        """(N,) per-record values with only `coalition` present (see the module docstring)."""
        return self._scored(frozenset(coalition)).records

    def predictions(self) -> list[Any]:
        """The predictions with every modality present, in the data's label space."""
        self._scored(self.full)
        return self._predictions

    def values(self) -> dict[Coalition, float]:
        """v(S) for every coalition (2^N forward passes)."""
        return {s: self.value(s) for s in coalitions(self.players)}

    def shapley(self, permutations: int = 200, seed: int = 0) -> dict[str, float]:
        """Data-set Shapley values in the main metric's units, positive = helps."""
        if len(self.players) <= EXACT_UP_TO:
            phi = shapley({s: self.value(s) for s in coalitions(self.players)}, self.players)
        else:
            phi = shapley_sampled(self.value, self.players, permutations, seed)
        return {m: float(v) for m, v in phi.items()}

    def record_shapley(self, permutations: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
        """(N,) Shapley values per modality, one per record (one forward pass per coalition for all records)."""
        if len(self.players) <= EXACT_UP_TO:
            return shapley({s: self.record_values(s) for s in coalitions(self.players)}, self.players)
        return shapley_sampled(self.record_values, self.players, permutations, seed)


# ------------------------------------------------------------------------------------------- entry points


def split_dataset(run: Run, split: str = "test") -> MultimodalDataset:
    """One split of the run's own data (as the run was trained: same split, fitted processors), decoded."""
    from polymodal.data.splits import ensure_val, label_field

    tables = ensure_val(load_splits(run.config.data, label_field(run.config)), run.config)
    if split not in tables:
        raise KeyError(f"the run's data has no {split!r} split; it has {', '.join(tables)}")
    decoded = decode(tables[split], run.processors, run.task)
    raise_on_fatal(decoded)
    return MultimodalDataset(decoded, {m: p.ragged for m, p in run.processors.items()})


def held_out_dataset(run: Run) -> tuple[str, MultimodalDataset]:
    """The run's test split, or its validation split where the data has no test split."""
    try:
        return "test", split_dataset(run, "test")
    except KeyError:
        return "val", split_dataset(run, "val")


def ablation(run: Run, dataset: MultimodalDataset, batch_size: int = 256,
             game: CoalitionGame | None = None) -> pd.DataFrame:
    """The task's metrics with all modalities, each one removed, each one alone, and none.

    One row per setting (`all`, `without <m>`, `only <m>`, `none`) with the modalities present, every metric of
    the task, and `change`: the main metric minus its value with all modalities (in the metric's own direction).
    """
    game = game or CoalitionGame(run, dataset, batch_size)
    full = game.players
    settings = [("all", game.full)]
    if len(full) > 1:
        settings += [(f"without {m}", game.full - {m}) for m in full] + [(f"only {m}", frozenset({m})) for m in full]
    settings.append(("none", frozenset()))
    base = game.metrics(game.full)[game.task.monitor]
    rows = [{"setting": name, "modalities": "+".join(m for m in full if m in s), **game.metrics(s),
             "change": game.metrics(s)[game.task.monitor] - base} for name, s in settings]
    return pd.DataFrame(rows).set_index("setting")


def dataset_shapley(run: Run, dataset: MultimodalDataset, permutations: int = 200, seed: int = 0,
                    batch_size: int = 256) -> dict[str, float]:
    """Shapley value of each modality for the main metric over `dataset`.

    In the metric's units and signed so that positive = the modality helps: for metrics where lower is better
    (rmse) the game is played on -metric, so a modality that lowers the error by 0.3 gets +0.3. The values add
    up to v(all) - v(none), the (signed) gain of all modalities over none. Exact for up to `EXACT_UP_TO`
    modalities, else estimated from `permutations` random orders.
    """
    return CoalitionGame(run, dataset, batch_size).shapley(permutations, seed)


def record_shapley(run: Run, dataset: MultimodalDataset, permutations: int = 200, seed: int = 0,
                   batch_size: int = 256) -> pd.DataFrame:
    """Per record: `value_full`, `value_empty` and `shapley_<modality>` (summing to value_full - value_empty).

    The value is how strongly the model holds its all-modality prediction (module docstring).
    """
    return _record_frame(CoalitionGame(run, dataset, batch_size), permutations, seed)


def explain_records(run: Run, dataset: MultimodalDataset, permutations: int = 200, seed: int = 0,
                    batch_size: int = 256) -> pd.DataFrame:
    """What `Predictor.explain` returns: per record its `prediction` (all modalities) and the columns of
    `record_shapley`. Works on records without targets."""
    game = CoalitionGame(run, dataset, batch_size)
    frame = _record_frame(game, permutations, seed)
    frame.insert(0, "prediction", game.predictions())
    return frame


def _record_frame(game: CoalitionGame, permutations: int, seed: int) -> pd.DataFrame:
    phi = game.record_shapley(permutations, seed)
    return pd.DataFrame({"value_full": game.record_values(game.full), "value_empty": game.record_values(frozenset()),
                         **{f"shapley_{m}": phi[m] for m in game.players}})


@dataclass
class Contribution:
    """Everything `contribution` measures on one data set (values signed so that positive = helps).

    Attributes:
        metric: the task's main metric; mode: "max" or "min" (then values are -metric).
        ablation: the table of `ablation`.
        shapley: data-set Shapley value per modality.
        interactions: pairwise Shapley interaction index (None above `EXACT_UP_TO` modalities).
        summary: `interaction_summary` of the coalition values.
    """

    metric: str
    mode: str
    ablation: pd.DataFrame
    shapley: dict[str, float]
    interactions: dict[tuple[str, str], float] | None
    summary: dict[str, float]


def contribution(run: Run, dataset: MultimodalDataset, permutations: int = 200, seed: int = 0,
                 batch_size: int = 256) -> Contribution:
    """Ablation, Shapley values, interactions and their summary, sharing one forward pass per coalition."""
    game = CoalitionGame(run, dataset, batch_size)
    players = game.players
    exact = len(players) <= EXACT_UP_TO
    values = game.values() if exact else {s: game.value(s) for s in _summary_coalitions(players)}
    return Contribution(
        metric=game.task.monitor, mode=game.task.mode, ablation=ablation(run, dataset, game=game),
        shapley=game.shapley(permutations, seed), interactions=shapley_interactions(values, players) if exact else None,
        summary=interaction_summary(values, players),
    )


def _summary_coalitions(players: Sequence[str]) -> list[Coalition]:
    return [frozenset(), frozenset(players), *(frozenset({p}) for p in players)]
