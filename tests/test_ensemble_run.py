"""Classical models stored as tensors, and an ensemble run that loads like any other run (no pickle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier

from polymodal.apps.candidates import forest, tfidf_linear, trees
from polymodal.config import TabularSpec, parse_config
from polymodal.data.batch import Batch
from polymodal.data.sources import Table
from polymodal.ensemble.classical import forest_from_sklearn, trees_from_sklearn
from polymodal.ensemble.model import to_probability
from polymodal.ensemble.rundir import save_ensemble
from polymodal.rundir import write_manifest
from polymodal.predictor import Predictor
from polymodal.tasks import build_task


def test_trees_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    x[rng.random((200, 4)) < 0.1] = np.nan
    y = (np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) ** 2 > 0.5).astype(int) + (x[:, 2] > 1)
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(x, y)
    module = trees_from_sklearn(model, ["tab"])
    missing = np.isnan(x)
    numeric = torch.from_numpy(np.concatenate([np.nan_to_num(x), missing], axis=1)).float()  # as the processor
    batch = Batch({"tab": {"numeric": numeric}}, {"tab": torch.ones(200, dtype=torch.bool)})
    expected = model.decision_function(x.astype(np.float32).astype(np.float64))
    assert np.allclose(module(batch).numpy(), expected, atol=1e-4)


@pytest.mark.parametrize("classes", [2, 3, 0])
def test_forest_matches_sklearn(classes: int) -> None:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    x[rng.random((200, 4)) < 0.1] = np.nan
    signal = np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) ** 2
    if classes:
        y = (signal > 0.5).astype(int) + (classes == 3) * (x[:, 2] > 1)
        model = RandomForestClassifier(20, min_samples_leaf=2, random_state=0).fit(x, y)
    else:
        model = RandomForestRegressor(20, random_state=0).fit(x, signal)
    module = forest_from_sklearn(model, ["tab"], 1 if classes == 2 else max(classes, 1))
    numeric = torch.from_numpy(np.concatenate([np.nan_to_num(x), np.isnan(x)], axis=1)).float()
    batch = Batch({"tab": {"numeric": numeric}}, {"tab": torch.ones(200, dtype=torch.bool)})
    out = module(batch)
    if not classes:
        assert np.allclose(out.numpy()[:, 0], model.predict(x.astype(np.float32)), atol=1e-4)
        return
    expected = model.predict_proba(x.astype(np.float32))
    proba = to_probability(out, "binary" if classes == 2 else "multiclass").numpy()
    got = np.concatenate([1 - proba, proba], axis=1) if classes == 2 else proba
    assert np.allclose(got, expected, atol=1e-3)  # fractions below FLOOR are raised to it


def small_tables(tmp_path: Path) -> tuple[dict[str, Table], pd.DataFrame]:
    rng = np.random.default_rng(1)
    labels = np.array(["a", "b", "c"] * 20)
    words = {"a": "red apple", "b": "green leaf", "c": "blue sky"}
    frame = pd.DataFrame({"caption": [f"{words[v]} {rng.choice(['x', 'y'])}" for v in labels],
                          "size": rng.normal(size=60) + (labels == "b") * 2, "label": labels})
    parts = {"train": frame.iloc[:36], "val": frame.iloc[36:48], "test": frame.iloc[48:]}
    return {s: Table(p.reset_index(drop=True), tmp_path, s) for s, p in parts.items()}, frame


def test_ensemble_run_round_trip(tmp_path: Path) -> None:
    tables, frame = small_tables(tmp_path)
    config = parse_config({"data": {"source": str(tmp_path / "t.csv")},
                           "modalities": {"size": {"type": "tabular", "numeric": ["size"]}},
                           "target": {"field": "label", "task": "multiclass"}})
    task = build_task(config.target)
    task.fit(task.values(tables["train"].frame))

    def score(logits: torch.Tensor, target: torch.Tensor) -> float:
        return task.metrics(logits, target)["accuracy"]

    text = tfidf_linear("text", config, ["caption"], tables, score, [10.0])
    tab = trees("tab", config, TabularSpec(type="tabular", numeric=["size"]), tables, score,
                [{"max_iter": 20, "max_leaf_nodes": 7}])
    woods = forest("woods", config, TabularSpec(type="tabular", numeric=["size"]), tables, score,
                   [{"n_estimators": 10, "min_samples_leaf": 2}])
    weights = {"text": 0.6, "tab": 0.2, "woods": 0.2}
    save_ensemble(tmp_path / "best", "best", [text.member, tab.member, woods.member], weights, task)
    write_manifest(tmp_path / "best")
    assert not list((tmp_path / "best").glob("*.pkl"))
    predictor = Predictor.load(tmp_path / "best")
    proba = predictor.predict_proba(tables["test"].frame).to_numpy()  # test logits: the refitted models'
    expected = sum(w * to_probability(m.logits["test"], "multiclass")
                   for w, m in zip(weights.values(), (text, tab, woods)))
    assert np.allclose(proba, expected.numpy(), atol=1e-5)
    assert predictor.evaluate(tables["test"].frame)["accuracy"] > 0.9


def test_tfidf_pairs_see_word_order() -> None:
    from polymodal.ensemble.classical import TfidfLinear, pair_counts

    ids = torch.tensor([[1, 2, 1, 2, 0], [2, 1, 2, 1, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 0]])
    counts = pair_counts(ids, mask, 64)
    assert counts.sum(1).tolist() == [3.0, 3.0]  # padding pairs left out
    module = TfidfLinear({"t": 4}, 2, pairs=64)
    batch = Batch({"t": {"ids": ids, "mask": mask}}, {"t": torch.ones(2, dtype=torch.bool)})
    unigrams, both = module.counts(batch)["t"], module.features(module.counts(batch))
    assert torch.equal(unigrams[0], unigrams[1]) and not torch.allclose(both[0], both[1])
    assert TfidfLinear(**module.options()).linear.in_features == 4 + 64


def test_joint_tfidf_weighs_a_word_the_same_in_every_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    labels = np.array(["a", "b", "c"] * 20)
    words = {"a": "red apple", "b": "green leaf", "c": "blue sky"}
    noise = ["x", "y", "z w"]
    first = [words[v] if i % 2 else str(rng.choice(noise)) for i, v in enumerate(labels)]
    second = [str(rng.choice(noise)) if i % 2 else words[v] for i, v in enumerate(labels)]
    frame = pd.DataFrame({"first": first, "second": second, "label": labels})
    parts = {"train": frame.iloc[:36], "val": frame.iloc[36:48], "test": frame.iloc[48:]}
    tables = {s: Table(p.reset_index(drop=True), tmp_path, s) for s, p in parts.items()}
    config = parse_config({"data": {"source": str(tmp_path / "t.csv")},
                           "modalities": {"first": {"type": "text", "field": "first"}},
                           "target": {"field": "label", "task": "multiclass"}})
    task = build_task(config.target)
    task.fit(task.values(tables["train"].frame))
    score = lambda logits, target: task.metrics(logits, target)["accuracy"]  # noqa: E731
    joint = tfidf_linear("joint", config, ["first", "second"], tables, score, [10.0], joint=True)
    save_ensemble(tmp_path / "best", "best", [joint.member], {"joint": 1.0}, task)
    write_manifest(tmp_path / "best")
    predictor = Predictor.load(tmp_path / "best")
    records = pd.DataFrame({"first": ["green leaf", "z w"], "second": ["z w", "green leaf"]})
    proba = predictor.predict_proba(records).to_numpy()
    assert np.allclose(proba[0], proba[1], atol=1e-6)  # the same words, in the other column
    assert list(predictor.predict(records)) == ["b", "b"]


def test_extra_trees_forest_matches_sklearn() -> None:
    from sklearn.ensemble import ExtraTreesClassifier

    rng = np.random.default_rng(3)
    x = rng.normal(size=(150, 3))
    x[rng.random((150, 3)) < 0.15] = np.nan
    y = (np.nan_to_num(x[:, 0]) > 0).astype(int) + (np.nan_to_num(x[:, 1]) > 0.5)
    model = ExtraTreesClassifier(15, max_features=None, random_state=0).fit(x, y)
    module = forest_from_sklearn(model, ["tab"], 3)
    numeric = torch.from_numpy(np.concatenate([np.nan_to_num(x), np.isnan(x)], axis=1)).float()
    batch = Batch({"tab": {"numeric": numeric}}, {"tab": torch.ones(150, dtype=torch.bool)})
    proba = to_probability(module(batch), "multiclass").numpy()
    assert np.allclose(proba, model.predict_proba(x.astype(np.float32)), atol=1e-3)
