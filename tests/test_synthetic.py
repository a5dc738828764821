"""Synthetic interaction datasets: determinism, splits, each regime's defining property, late vs concat fusion."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from polymodal.datasets import DATASETS
from polymodal.datasets.synthetic import make_interactions, materialize_interactions


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These models are tiny: a second thread only adds contention (30x slower on a loaded 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {r: make_interactions(r) for r in ("redundancy", "uniqueness", "synergy")}


def stacked(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return np.concatenate([np.stack(frame[c].to_numpy()) for c in columns], axis=1)  # (n, sum dims)


def holdout_accuracy(frame: pd.DataFrame, columns: list[str], hidden: int = 0, steps: int = 300) -> float:
    """Full-batch Adam on the train split (standardized), accuracy on the test split. hidden=0: logistic."""
    torch.manual_seed(0)
    x = torch.from_numpy(stacked(frame, columns))  # (n, D)
    y = torch.tensor(frame["label"].to_numpy(), dtype=torch.float32)  # (n,)
    train, test = (torch.tensor((frame["split"] == s).to_numpy()) for s in ("train", "test"))
    x = (x - x[train].mean(0)) / x[train].std(0)
    net = nn.Linear(x.shape[1], 1) if not hidden else nn.Sequential(
        nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, 1))
    opt = torch.optim.Adam(net.parameters(), lr=0.01 if hidden else 0.05)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(net(x[train])[:, 0], y[train]).backward()
        opt.step()
    with torch.no_grad():
        return ((net(x[test])[:, 0] > 0).float() == y[test]).float().mean().item()




def test_same_seed_same_frame() -> None:
    a, b, c = (make_interactions("synergy", n=500, seed=s) for s in (3, 3, 4))
    assert np.array_equal(stacked(a, ["m0", "m1"]), stacked(b, ["m0", "m1"]))
    assert a[["label", "split"]].equals(b[["label", "split"]])
    assert not np.array_equal(stacked(a, ["m0"]), stacked(c, ["m0"]))


def test_columns_and_split_sizes(frames: dict[str, pd.DataFrame]) -> None:
    for frame in frames.values():
        assert list(frame.columns) == ["m0", "m1", "label", "split"]
        assert frame["split"].value_counts().to_dict() == {"train": 4200, "val": 900, "test": 900}
        assert frame["m0"].iloc[0].dtype == np.float32 and frame["m0"].iloc[0].shape == (16,)
        assert set(frame["label"]) == {0, 1} and 0.45 < frame["label"].mean() < 0.55
    three = make_interactions("synergy", n=100, n_modalities=3, dim=5)
    assert list(three.columns) == ["m0", "m1", "m2", "label", "split"] and three["m2"].iloc[0].shape == (5,)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="allowed: redundancy, uniqueness, synergy"):
        make_interactions("xor")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_modalities <= 16"):
        make_interactions("synergy", n_modalities=1)


def test_synergy_needs_both_modalities_and_a_nonlinear_model(frames: dict[str, pd.DataFrame]) -> None:
    frame = frames["synergy"]
    assert holdout_accuracy(frame, ["m0"]) < 0.6 and holdout_accuracy(frame, ["m1"]) < 0.6
    assert holdout_accuracy(frame, ["m0", "m1"]) < 0.6  # XOR is not linearly separable
    assert holdout_accuracy(frame, ["m0", "m1"], hidden=32) > 0.9


def test_synergy_parity_over_three_modalities_hides_the_label_from_pairs() -> None:
    frame = make_interactions("synergy", n=3000, n_modalities=3)
    assert holdout_accuracy(frame, ["m0", "m1"], hidden=32) < 0.6


def test_redundancy_every_modality_predicts(frames: dict[str, pd.DataFrame]) -> None:
    frame = frames["redundancy"]
    singles = [holdout_accuracy(frame, [m]) for m in ("m0", "m1")]
    assert min(singles) > 0.8
    assert holdout_accuracy(frame, ["m0", "m1"]) >= max(singles)


def test_uniqueness_only_m0_predicts(frames: dict[str, pd.DataFrame]) -> None:
    frame = frames["uniqueness"]
    assert holdout_accuracy(frame, ["m0"]) > 0.85 and holdout_accuracy(frame, ["m1"]) < 0.6


def test_materialize_writes_parquet_and_reuses_it(tmp_path: Path) -> None:
    root = materialize_interactions(tmp_path / "u", regime="uniqueness", seed=2)
    table = root / "records.parquet"
    back = pd.read_parquet(table)
    expected = make_interactions("uniqueness", seed=2)
    assert np.array_equal(stacked(back, ["m0", "m1"]), stacked(expected, ["m0", "m1"]))
    assert back[["label", "split"]].equals(expected[["label", "split"]])
    stamp = table.stat().st_mtime_ns
    assert materialize_interactions(root, regime="uniqueness", seed=2) == root and table.stat().st_mtime_ns == stamp


def test_builtins_are_registered_with_a_parquet_table() -> None:
    from polymodal.data.sources import load_splits
    from polymodal.factory import parse_config

    for regime in ("redundancy", "uniqueness", "synergy"):
        assert DATASETS[f"interactions_{regime}"].table == "records.parquet"
    config = parse_config(synergy_config(Path("unused"), "concat", epochs=1))
    tables = load_splits(config.data, "label")
    assert {s: len(t) for s, t in tables.items()} == {"train": 4200, "val": 900, "test": 900}


def synergy_config(out: Path, fusion: str, epochs: int) -> dict[str, Any]:
    vector = {"type": "vector", "encoder": {"name": "vector_mlp", "out_dim": 16, "hidden": 32}}
    return {
        "name": out.name,
        "data": {"builtin": "interactions_synergy"},
        "modalities": {"m0": vector, "m1": vector},
        "target": {"field": "label", "task": "binary"},
        "fusion": {"name": fusion, "hidden": 32},
        "training": {"epochs": epochs, "batch_size": 256, "lr": 1e-2, "patience": None, "progress_bar": False},
        "output_dir": str(out),
    }


@pytest.mark.slow
def test_concat_fusion_learns_synergy_and_late_fusion_cannot(tmp_path: Path) -> None:
    from polymodal.factory import parse_config
    from polymodal.training.fit import train

    acc = {f: train(parse_config(synergy_config(tmp_path / f, f, epochs=3))).metrics["test"]["accuracy"]
           for f in ("concat", "late")}
    assert acc["concat"] > 0.85 and acc["late"] < 0.65, acc
