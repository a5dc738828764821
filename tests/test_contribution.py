"""Modality contribution: Shapley axioms on hand-made games, and on trained runs (including a model that provably
ignores one modality), ablation, per-record explanations, interactions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_config

from polymodal.data.dataset import MultimodalDataset, decode, raise_on_fatal
from polymodal.data.sources import Table
from polymodal.evaluation.contribution import (
    CoalitionGame,
    coalitions,
    contribution,
    dataset_shapley,
    explain_records,
    interaction_summary,
    record_shapley,
    shapley,
    shapley_interactions,
    shapley_sampled,
    split_dataset,
)
from polymodal.evaluation.inference import output_metrics, predict_outputs
from polymodal.factory import parse_config
from polymodal.fusion.concat import ConcatFusion
from polymodal.predictor import Predictor
from polymodal.rundir import Run, load_run
from polymodal.training.fit import train

F = frozenset


def random_game(players: list[str], seed: int = 0) -> dict[frozenset[str], float]:
    rng = np.random.default_rng(seed)
    return {s: float(rng.random()) for s in coalitions(players)}


def weighted_game(players: list[str]) -> dict[frozenset[str], float]:
    """a and b are interchangeable and complementary, c adds 5 on its own, d never changes anything."""
    def v(s: frozenset[str]) -> float:
        return 2.0 * ("a" in s) + 2.0 * ("b" in s) + 3.0 * ({"a", "b"} <= s) + 5.0 * ("c" in s)
    return {s: v(s) for s in coalitions(players)}


# ------------------------------------------------------------------------------------------ hand-made games


def test_coalitions_are_every_subset() -> None:
    subsets = coalitions(["a", "b", "c"])
    assert len(subsets) == 8 == len(set(subsets)) and subsets[0] == F() and subsets[-1] == F("abc")


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_efficiency_on_a_random_game(n: int) -> None:
    players = list("abcde"[:n])
    values = random_game(players, seed=n)
    phi = shapley(values, players)
    assert sum(phi.values()) == pytest.approx(values[F(players)] - values[F()], abs=1e-12)


def test_symmetry_dummy_and_known_values() -> None:
    players = ["a", "b", "c", "d"]
    phi = shapley(weighted_game(players), players)
    assert phi["a"] == pytest.approx(phi["b"], abs=1e-12)  # symmetry
    assert phi["a"] == pytest.approx(2.0 + 3.0 / 2, abs=1e-12)  # its own 2 plus half of the pair's bonus
    assert phi["c"] == pytest.approx(5.0, abs=1e-12)  # additivity: a player that adds 5 alone and with anyone
    assert phi["d"] == 0.0  # dummy: exactly zero


def test_two_player_game_by_hand() -> None:
    values = {F(): 0.1, F("a"): 0.5, F("b"): 0.3, F("ab"): 0.9}
    phi = shapley(values, ["a", "b"])
    # a: half of (v(a) - v()) + half of (v(ab) - v(b))
    assert phi["a"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.6)
    assert phi["b"] == pytest.approx(0.5 * 0.2 + 0.5 * 0.4)


def test_shapley_on_arrays_is_per_element() -> None:
    players = ["a", "b", "c"]
    games = [random_game(players, seed=s) for s in range(4)]
    stacked = {s: np.array([g[s] for g in games]) for s in coalitions(players)}
    phi = shapley(stacked, players)
    for k, g in enumerate(games):
        one = shapley(g, players)
        assert all(phi[p][k] == pytest.approx(one[p], abs=1e-12) for p in players)


def test_sampled_shapley_approaches_exact() -> None:
    players = ["a", "b", "c", "d"]
    values = random_game(players, seed=7)
    exact = shapley(values, players)
    sampled = shapley_sampled(values.__getitem__, players, permutations=4000, seed=1)
    assert max(abs(sampled[p] - exact[p]) for p in players) < 0.04
    assert sum(sampled.values()) == pytest.approx(values[F(players)] - values[F()], abs=1e-12)  # every order telescopes
    rough = shapley_sampled(values.__getitem__, players, permutations=20, seed=1)
    assert rough != sampled  # it really samples


def test_sampled_shapley_is_exact_on_additive_games_and_reproducible() -> None:
    players = [f"m{i}" for i in range(8)]  # above the exact limit
    weights = {p: float(i) for i, p in enumerate(players)}
    calls: list[frozenset[str]] = []

    def v(s: frozenset[str]) -> float:
        calls.append(s)
        return sum(weights[p] for p in s)

    phi = shapley_sampled(v, players, permutations=30, seed=3)
    assert phi == pytest.approx(weights, abs=1e-12)
    assert len(calls) == len(set(calls))  # each coalition evaluated once
    assert shapley_sampled(v, players, permutations=30, seed=3) == phi


def test_interactions_and_summary_xor_vs_redundant() -> None:
    xor = {F(): 0.5, F("a"): 0.5, F("b"): 0.5, F("ab"): 1.0}  # neither alone beats chance, together perfect
    redundant = {F(): 0.5, F("a"): 1.0, F("b"): 1.0, F("ab"): 1.0}  # either one alone is enough
    additive = {F(): 0.0, F("a"): 0.2, F("b"): 0.3, F("ab"): 0.5}
    s_xor, s_red, s_add = (interaction_summary(g) for g in (xor, redundant, additive))
    assert s_xor == pytest.approx({"sum_of_unimodal_gains": 0.0, "joint_gain": 0.5, "synergy": 0.5})
    assert s_red == pytest.approx({"sum_of_unimodal_gains": 1.0, "joint_gain": 0.5, "synergy": -0.5})
    assert s_add["synergy"] == pytest.approx(0.0)
    assert shapley_interactions(xor, ["a", "b"])[("a", "b")] == pytest.approx(0.5)
    assert shapley_interactions(redundant, ["a", "b"])[("a", "b")] == pytest.approx(-0.5)
    assert shapley_interactions(additive, ["a", "b"])[("a", "b")] == pytest.approx(0.0)


def test_interaction_index_of_a_pair_bonus() -> None:
    players = ["a", "b", "c", "d"]
    inter = shapley_interactions(weighted_game(players), players)
    assert inter[("a", "b")] == pytest.approx(3.0)  # the pair's bonus, whatever else is present
    assert all(inter[p] == pytest.approx(0.0, abs=1e-12) for p in inter if p != ("a", "b"))


# --------------------------------------------------------------------------------------------- trained runs


@pytest.fixture(scope="module")
def run_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("contribution") / "concat"
    train(parse_config(make_config(data_dir, out, ["emb", "specs"], fusion="concat", epochs=3)))
    return out


@pytest.fixture(scope="module")
def test_set(run_dir: Path) -> MultimodalDataset:
    return split_dataset(load_run(run_dir), "test")


def ignore_modality(run: Run, modality: str) -> None:
    """Zero every weight through which concat fusion reads `modality`: its feature columns and its presence flag
    in the first layer. Its features and presence then enter only as products with exact zeros."""
    fusion = run.model.fusion
    assert isinstance(fusion, ConcatFusion)
    first = fusion.net[0]
    dims = fusion.in_dims
    start = sum(dims[m] for m in fusion.modalities[: fusion.modalities.index(modality)])
    flag = sum(dims.values()) + fusion.modalities.index(modality)
    with torch.no_grad():
        first.weight[:, start: start + dims[modality]] = 0.0
        first.weight[:, flag] = 0.0


def test_dataset_shapley_adds_up_to_full_minus_empty(run_dir: Path, test_set: MultimodalDataset) -> None:
    run = load_run(run_dir)
    game = CoalitionGame(run, test_set)
    phi = dataset_shapley(run, test_set)
    assert set(phi) == {"emb", "specs"}
    assert sum(phi.values()) == pytest.approx(game.value(["emb", "specs"]) - game.value([]), abs=1e-9)
    out, target = predict_outputs(run.model, run.processors, test_set, drop=frozenset({"specs"}))
    assert game.metrics(["emb"]) == output_metrics(run.task, out, target)  # v(S) really drops what is not in S


def test_a_modality_the_model_cannot_read_gets_zero(run_dir: Path, test_set: MultimodalDataset) -> None:
    run = load_run(run_dir)
    ignore_modality(run, "specs")
    game = CoalitionGame(run, test_set)
    assert np.array_equal(game.record_values(["emb"]), game.record_values(["emb", "specs"]))
    assert np.array_equal(game.record_values([]), game.record_values(["specs"]))
    phi = game.shapley()
    assert abs(phi["specs"]) < 1e-9
    records = record_shapley(run, test_set)
    assert np.abs(records["shapley_specs"]).max() < 1e-9
    assert np.abs(records["shapley_emb"]).max() > 1e-3  # the other modality still moves predictions
    table = contribution(run, test_set)
    assert table.interactions is not None and abs(table.interactions[("emb", "specs")]) < 1e-9
    assert table.ablation.loc["without specs", "accuracy"] == table.ablation.loc["all", "accuracy"]


def test_record_shapley_adds_up_per_record(run_dir: Path, test_set: MultimodalDataset) -> None:
    run = load_run(run_dir)
    frame = record_shapley(run, test_set)
    assert list(frame.columns) == ["value_full", "value_empty", "shapley_emb", "shapley_specs"]
    assert len(frame) == len(test_set)
    total = frame["shapley_emb"] + frame["shapley_specs"]
    np.testing.assert_allclose(total, frame["value_full"] - frame["value_empty"], atol=1e-9)
    out, _ = predict_outputs(run.model, run.processors, test_set)
    proba = np.stack(list(run.task.proba(out.logits).values()), axis=1)
    np.testing.assert_allclose(frame["value_full"], proba.max(axis=1), atol=1e-6)  # p(predicted class)


def test_ablation_table(run_dir: Path, test_set: MultimodalDataset) -> None:
    run = load_run(run_dir)
    table = contribution(run, test_set).ablation
    assert list(table.index) == ["all", "without emb", "without specs", "only emb", "only specs", "none"]
    assert {"modalities", "accuracy", "macro_f1", "auroc", "change"} <= set(table.columns)
    assert table.loc["all", "modalities"] == "emb+specs" and table.loc["none", "modalities"] == ""
    assert table.loc["without emb", "accuracy"] == table.loc["only specs", "accuracy"]
    np.testing.assert_allclose(table["change"], table["accuracy"] - table.loc["all", "accuracy"])
    out, target = predict_outputs(run.model, run.processors, test_set)
    assert table.loc["all", "accuracy"] == pytest.approx(output_metrics(run.task, out, target)["accuracy"])


def test_contribution_summary_is_consistent(run_dir: Path, test_set: MultimodalDataset) -> None:
    result = contribution(load_run(run_dir), test_set)
    assert result.metric == "accuracy" and result.mode == "max"
    assert sum(result.shapley.values()) == pytest.approx(result.summary["joint_gain"], abs=1e-9)
    assert result.interactions is not None  # with two players the pair index is the synergy itself
    assert result.interactions[("emb", "specs")] == pytest.approx(result.summary["synergy"], abs=1e-9)


def test_explain_records_without_targets(run_dir: Path, data_dir: Path) -> None:
    run = load_run(run_dir)
    frame = pd.read_parquet(data_dir / "data.parquet").head(5).drop(columns=["label"])
    frame.loc[0, "emb"] = None  # a record missing a modality: that modality gets exactly zero
    decoded = decode(Table(frame, data_dir, "input"), run.processors, None, keep_all=True)
    raise_on_fatal(decoded)
    explained = explain_records(run, MultimodalDataset(decoded, {m: p.ragged for m, p in run.processors.items()}))
    assert list(explained.columns) == ["prediction", "value_full", "value_empty", "shapley_emb", "shapley_specs"]
    assert list(explained["prediction"]) == list(Predictor(run).predict(frame, root=data_dir))
    assert explained.loc[0, "shapley_emb"] == 0.0
    np.testing.assert_allclose(explained[["shapley_emb", "shapley_specs"]].sum(1),
                               explained["value_full"] - explained["value_empty"], atol=1e-9)


@pytest.mark.parametrize(("task", "field"), [("regression", "score"), ("multilabel", "tags")])
def test_other_tasks(data_dir: Path, tmp_path: Path, task: str, field: str) -> None:
    train(parse_config(make_config(data_dir, tmp_path / "run", ["emb", "specs"], task=task, field=field, epochs=2)))
    run = load_run(tmp_path / "run")
    data = split_dataset(run, "val")
    game = CoalitionGame(run, data)
    phi = dataset_shapley(run, data)
    metric = run.task.monitor
    full, empty = game.metrics(["emb", "specs"])[metric], game.metrics([])[metric]
    sign = -1.0 if task == "regression" else 1.0  # rmse: lower is better, so a lower error is a positive gain
    assert sum(phi.values()) == pytest.approx(sign * (full - empty), abs=1e-9)
    records = record_shapley(run, data)
    np.testing.assert_allclose(records[["shapley_emb", "shapley_specs"]].sum(1),
                               records["value_full"] - records["value_empty"], atol=1e-9)
    out, _ = predict_outputs(run.model, run.processors, data)
    if task == "regression":  # the record value is the prediction itself, in the data's units
        np.testing.assert_allclose(records["value_full"], run.task.predict(out.logits), rtol=1e-6)
    else:
        assert ((records["value_full"] > 0) & (records["value_full"] <= 1)).all()


def test_exact_and_sampled_agree_on_a_trained_run(run_dir: Path, test_set: MultimodalDataset) -> None:
    game = CoalitionGame(load_run(run_dir), test_set)
    exact, values = game.shapley(), game.values()
    sampled = shapley_sampled(values.__getitem__, list(game.players), permutations=400, seed=0)
    pair = abs(shapley_interactions(values, list(game.players))[("emb", "specs")])
    # two players: the estimate is off by (share of orders putting a first - 1/2) times the pair's interaction
    assert all(abs(sampled[p] - exact[p]) <= 0.1 * pair + 1e-12 for p in exact)


