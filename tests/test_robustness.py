"""Robustness evaluation: corrupted and incomplete datasets, missing patterns, curve summaries, the whole job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_config

from polymodal.data.dataset import MultimodalDataset, decode
from polymodal.data.sources import Table
from polymodal.evaluation.corruptions import CORRUPTIONS, Corruption
from polymodal.evaluation.inference import predict_outputs
from polymodal.evaluation.robustness import (
    area_under_curve,
    decode_corrupted,
    effective_robustness,
    evaluate_robustness,
    load_table,
    missing_patterns,
    random_missing,
    relative_robustness,
    run_robustness,
    summarize,
)
from polymodal.factory import parse_config
from polymodal.rundir import Run, load_run
from polymodal.training.fit import train

MODALITIES = ["photo", "title", "emb"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Any:
    """Dozens of tiny forward passes: one intra-op thread avoids thread hand-off costs on busy machines."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("robust") / "run"
    train(parse_config(make_config(data_dir, out, MODALITIES, epochs=2)))
    return out


@pytest.fixture(scope="module")
def run(run_dir: Path) -> Run:
    return load_run(run_dir)


@pytest.fixture(scope="module")
def table(run: Run) -> Table:
    return load_table(run, None)


# ---- missing patterns and curve summaries (no model) --------------------------------------------------------

@pytest.mark.parametrize("n", range(1, 7))
def test_missing_patterns_are_every_nonempty_subset(n: int) -> None:
    mods = [f"m{i}" for i in range(n)]
    patterns = missing_patterns(mods)
    assert len(patterns) == 2**n - 1 == len(set(patterns))
    assert all(p and p <= set(mods) for p in patterns) and frozenset(mods) in patterns


def test_missing_patterns_are_sampled_above_six_modalities() -> None:
    mods = [f"m{i}" for i in range(8)]
    patterns = missing_patterns(mods, samples=40)
    assert len(patterns) == 40 == len(set(patterns))
    for m in mods:
        assert frozenset([m]) in patterns and frozenset(mods) - {m} in patterns
    assert frozenset(mods) in patterns and patterns == missing_patterns(mods, samples=40)


def test_flat_curve_has_relative_robustness_one_and_no_effective_gain_over_itself() -> None:
    levels, flat = [0, 1, 2, 3, 4, 5], [0.8] * 6
    assert area_under_curve(levels, flat) == pytest.approx(0.8)
    assert relative_robustness(levels, flat) == pytest.approx(1.0)
    assert effective_robustness(levels, flat, levels, flat) == pytest.approx(0.0)


def test_summaries_of_a_linear_curve_equal_hand_computed_values() -> None:
    levels, line = [0, 1, 2, 3, 4, 5], [1.0, 0.8, 0.6, 0.4, 0.2, 0.0]
    assert area_under_curve(levels, line) == pytest.approx(0.5)  # triangle over 0..1
    assert relative_robustness(levels, line) == pytest.approx(0.5)
    assert effective_robustness(levels, line, levels, line) == pytest.approx(0.0)  # follows its own trend
    assert effective_robustness(levels, line, levels, [0.5] * 6) == pytest.approx(-0.6)  # mean(-.2, ..., -1)
    assert effective_robustness(levels, [0.5] * 6, levels, line) == pytest.approx(0.6)  # vs a falling baseline
    # lower is better (rmse): errors 1 -> 2 over 0..1
    assert area_under_curve([0, 1], [1.0, 2.0]) == pytest.approx(1.5)
    assert relative_robustness([0, 1], [1.0, 2.0], mode="min") == pytest.approx(1 / 1.5)
    assert effective_robustness([0, 1], [1.0, 2.0], [0, 1], [3.0, 3.0], mode="min") == pytest.approx(-1.0)


def curve_rows(kind: str, modality: str, name: str, scores: list[float]) -> list[dict[str, Any]]:
    top = len(scores) - 1
    return [{"kind": kind, "modality": modality, "corruption": name, "level": i, "x": i / top, "metric": "accuracy",
             "score": s} for i, s in enumerate(scores)]


def test_summary_trend_is_the_own_average_curve_or_a_baseline_run() -> None:
    results = pd.DataFrame(curve_rows("corruption", "a", "noise", [0.8, 0.8])
                           + curve_rows("corruption", "b", "noise", [1.0, 0.6])
                           + curve_rows("missing_rate", "a", "random", [0.8, 0.4]))
    summary = summarize(results).set_index(["kind", "modality"])
    # average corruption curve: 0.9 -> 0.7, slope -0.2 per unit level
    assert summary.loc[("corruption", "a"), "effective_robustness"] == pytest.approx(0.8 - (0.8 - 0.2))
    assert summary.loc[("corruption", "b"), "effective_robustness"] == pytest.approx(0.6 - (1.0 - 0.2))
    assert summary.loc[("corruption", "b"), "auc"] == pytest.approx(0.8)
    assert summary.loc[("corruption", "b"), "relative_robustness"] == pytest.approx(0.8)
    assert summary.loc[("missing_rate", "a"), "effective_robustness"] == pytest.approx(0.0)  # its own average
    baseline = pd.DataFrame(curve_rows("corruption", "a", "noise", [0.5, 0.0]))  # a baseline reading only a
    with_base = summarize(results, baseline).set_index(["kind", "modality"])
    assert with_base.loc[("corruption", "a"), "effective_robustness"] == pytest.approx(0.8 - (0.8 - 0.5))
    assert with_base.loc[("corruption", "b"), "effective_robustness"] == pytest.approx(0.6 - 1.0)  # flat trend
    assert (with_base["baseline"] == "baseline run").all()


# ---- datasets ------------------------------------------------------------------------------------------------

def test_severity_zero_decodes_like_the_plain_pipeline(run: Run, table: Table) -> None:
    plain = MultimodalDataset(decode(table, run.processors, run.task), {m: p.ragged for m, p in run.processors.items()})
    same = decode_corrupted(table, run.processors, run.task, {"photo": ("blur", 0), "title": ("typos", 0)})
    assert np.array_equal(plain.fixed["photo"]["pixels"], same.fixed["photo"]["pixels"])
    assert all(np.array_equal(a, b) for a, b in zip(plain.lists["title"]["ids"], same.lists["title"]["ids"]))
    noisy = decode_corrupted(table, run.processors, run.task, {"photo": ("gaussian_noise", 3)}, seed=1)
    again = decode_corrupted(table, run.processors, run.task, {"photo": ("gaussian_noise", 3)}, seed=1)
    assert not np.array_equal(plain.fixed["photo"]["pixels"], noisy.fixed["photo"]["pixels"])
    assert np.array_equal(noisy.fixed["photo"]["pixels"], again.fixed["photo"]["pixels"])
    assert np.array_equal(plain.fixed["emb"]["values"], noisy.fixed["emb"]["values"])  # other modalities untouched


def test_paired_modalities_get_the_same_draws_per_record(run: Run, table: Table,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Convention 11: the corruptions of one record's modalities see the same random numbers."""
    seen: dict[str, list[float]] = {"image": [], "vector": []}

    def probe(kind: str) -> Corruption:
        def fn(raw: Any, level: float, rng: np.random.Generator, stats: Any) -> Any:
            seen[kind].append(float(rng.random()))
            return raw
        return Corruption(kind, "probe", fn, (1.0,) * 5)

    monkeypatch.setitem(CORRUPTIONS["image"], "probe", probe("image"))
    monkeypatch.setitem(CORRUPTIONS["vector"], "probe", probe("vector"))
    decode_corrupted(table, run.processors, run.task, {"photo": ("probe", 2), "emb": ("probe", 2)}, seed=3)
    assert len(seen["image"]) == len(table) and seen["image"] == seen["vector"]
    assert len(set(seen["image"])) == len(table)  # but a different draw for every record


def test_random_missing_drops_an_exact_nested_fraction(run: Run, table: Table) -> None:
    data = MultimodalDataset(decode(table, run.processors, run.task), {m: p.ragged for m, p in run.processors.items()})
    n = len(data)
    previous = np.zeros(n, dtype=bool)
    for rate in (0.0, 0.25, 0.5, 0.9):
        out = random_missing(data, "title", rate, seed=2)
        missing = ~out.present["title"]
        assert missing.sum() == round(rate * n) and (missing >= previous).all()
        assert np.array_equal(out.present["photo"], data.present["photo"])
        previous = missing
    assert data.present["title"].all()  # the original is left alone
    assert np.array_equal(random_missing(data, "title", 0.5, 2).present["title"],
                          random_missing(data, "photo", 0.5, 2).present["photo"])  # one draw per record


# ---- the whole job -------------------------------------------------------------------------------------------

def test_run_robustness_writes_tables_and_plots(run_dir: Path, run: Run) -> None:
    results, summary = run_robustness(run_dir)
    for name in ("robustness.csv", "robustness_summary.csv", "robustness_severity.png", "robustness_missing.png"):
        assert (run_dir / name).is_file(), name
    assert len(pd.read_csv(run_dir / "robustness.csv")) == len(results)
    monitor = run.task.monitor
    clean = results[results["kind"] == "clean"]["score"].item()
    assert clean == pytest.approx(json.loads((run_dir / "metrics.json").read_text())["test"][monitor], abs=1e-6)
    assert np.allclose(results[results["level"] == 0].query("kind != 'missing_pattern'")["score"], clean)
    kinds = results.groupby("kind").size()
    assert kinds["corruption"] == 6 * (4 + 3 + 2) and kinds["missing_rate"] == 10 * 3
    assert kinds["missing_pattern"] == 2**3 - 1
    assert len(summary) == 9 + 3 and summary["relative_robustness"].notna().all()
    assert np.allclose(summary["clean"], clean)


def test_a_modality_the_model_ignores_gives_a_flat_curve(run: Run, table: Table) -> None:
    """With the text encoder zeroed the model cannot see the text: corrupting it changes no prediction."""
    blind = Run(run.config, run.processors, run.task, load_run(run.path).model, run.path)
    with torch.no_grad():
        for p in blind.model.encoders["title"].parameters():
            p.zero_()
    results = evaluate_robustness(blind, table, rates=(0.0,), corruptions={"title": ["word_dropout", "typos"]})
    curves = results[results["kind"] == "corruption"]
    assert len(curves) == 12 and np.allclose(curves["score"], curves["score"].iloc[0])
    clean_set = decode_corrupted(table, run.processors, run.task, {})
    worst = decode_corrupted(table, run.processors, run.task, {"title": ("word_swap", 5)})
    logits = [predict_outputs(blind.model, run.processors, d)[0].logits for d in (clean_set, worst)]
    assert torch.equal(*logits)
    summary = summarize(results).set_index("corruption").loc["typos"]
    assert summary["relative_robustness"] == pytest.approx(1.0)


def test_a_baseline_run_sets_the_trend(run_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    base_dir = tmp_path / "unimodal"
    train(parse_config(make_config(data_dir, base_dir, ["emb"], epochs=1)))
    results, summary = run_robustness(run_dir, baseline=base_dir, out=tmp_path / "out")
    assert (tmp_path / "out" / "robustness_summary.csv").is_file()
    row = summary.set_index(["kind", "modality", "corruption"]).loc[("corruption", "title", "typos")]
    curve = results[(results["modality"] == "title") & (results["corruption"] == "typos")]
    expected = np.mean(curve["score"].to_numpy()[1:] - curve["score"].iloc[0])  # the baseline has no text: flat
    assert row["effective_robustness"] == pytest.approx(expected) and row["baseline"] == "baseline run"
