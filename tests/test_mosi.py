"""CMU-MOSI/MOSEI loaders: SDK computational sequences (HDF5) and aligned npz arrays -> one row per segment."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from polymodal.config import MosiConfig
from polymodal.data.formats.mosi import MosiError, read_mosi_h5, read_mosi_npz
from polymodal.factory import parse_config
from polymodal.training.fit import train

VIDEOS = {"vidA": [(0.0, 2.0, 1.5), (2.0, 5.0, -2.0)], "vidB": [(0.5, 3.0, 0.4)]}


def write_sequence(path: Path, name: str, entries: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """One computational sequence in the CMU-MultimodalSDK layout."""
    with h5py.File(path, "w") as f:
        root = f.create_group(name)
        data = root.create_group("data")
        for vid, (features, intervals) in entries.items():
            g = data.create_group(vid)
            g.create_dataset("features", data=features)
            g.create_dataset("intervals", data=intervals)
        meta = root.create_group("metadata")
        meta.attrs["root name"] = name


def frames(start: float, end: float, step: float, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    times = np.arange(start, end, step)
    intervals = np.stack([times, times + step], axis=1)
    return np.random.default_rng(seed).normal(size=(len(times), dim)).astype(np.float32), intervals


def write_mosi(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    labels = {v: (np.array([[s] for *_, s in segs], dtype=np.float32),
                  np.array([[a, b] for a, b, _ in segs])) for v, segs in VIDEOS.items()}
    write_sequence(root / "labels.csd", "Opinion Segment Labels", labels)
    write_sequence(root / "words.csd", "glove_vectors", {v: frames(0, 5, 0.5, 4, i) for i, v in enumerate(VIDEOS)})
    write_sequence(root / "covarep.csd", "COVAREP", {v: frames(0, 5, 0.1, 3, 9 + i) for i, v in enumerate(VIDEOS)})
    (root / "folds.json").write_text(json.dumps({"train": ["vidA"], "test": ["vidB"]}))
    return root


OPTIONS = MosiConfig(features={"text": "words.csd", "audio": "covarep.csd"}, labels="labels.csd", folds="folds.json")


def test_read_h5_one_row_per_segment(tmp_path: Path) -> None:
    frame = read_mosi_h5(write_mosi(tmp_path), OPTIONS)
    assert frame["id"].tolist() == ["vidA[0]", "vidA[1]", "vidB"]
    assert frame["label"].tolist() == [1.5, -2.0, pytest.approx(0.4)]
    assert frame["split"].tolist() == ["train", "train", "test"]
    # segment vidA[0] = [0, 2): words every 0.5 s -> 4 rows; COVAREP every 0.1 s -> 20 rows
    assert frame["text"][0].shape == (4, 4) and frame["audio"][0].shape == (20, 3)
    assert frame["text"][1].shape == (6, 4)
    with h5py.File(tmp_path / "words.csd") as f:
        np.testing.assert_allclose(frame["text"][0], f["glove_vectors/data/vidA/features"][:4])


def _rewrite(path: Path, key: str, value: np.ndarray | None) -> None:
    with h5py.File(path, "a") as f:
        del f[key]
        if value is not None:
            f.create_dataset(key, data=value)


def test_h5_malformed_files_name_file_key_and_id(tmp_path: Path) -> None:
    root = write_mosi(tmp_path / "a")
    _rewrite(root / "covarep.csd", "COVAREP/data/vidB/intervals", np.zeros((3, 2)))
    with pytest.raises(MosiError, match=r"covarep.csd: id 'vidB': 50 feature rows but 3 intervals"):
        read_mosi_h5(root, OPTIONS)

    root = write_mosi(tmp_path / "b")
    _rewrite(root / "words.csd", "glove_vectors/data/vidB", None)
    with pytest.raises(MosiError, match=r"words.csd: no id 'vidB' \(key glove_vectors/data/vidB\)"):
        read_mosi_h5(root, OPTIONS)

    root = write_mosi(tmp_path / "c")
    _rewrite(root / "labels.csd", "Opinion Segment Labels/data/vidA/intervals", None)
    with pytest.raises(MosiError, match=r"labels.csd: id 'vidA' has no 'intervals'"):
        read_mosi_h5(root, OPTIONS)

    root = write_mosi(tmp_path / "d")
    _rewrite(root / "covarep.csd", "COVAREP/data", None)
    with pytest.raises(MosiError, match="covarep.csd: group 'COVAREP' has no 'data'"):
        read_mosi_h5(root, OPTIONS)

    root = write_mosi(tmp_path / "e")
    (root / "folds.json").write_text(json.dumps({"train": ["vidA"]}))
    with pytest.raises(MosiError, match=r"video ids \['vidB'\] have labels but are in no fold"):
        read_mosi_h5(root, OPTIONS)


def test_h5_nonfinite_features(tmp_path: Path) -> None:
    root = write_mosi(tmp_path)
    features, _ = frames(0, 5, 0.1, 3, 9)
    features[3, 1] = -np.inf
    _rewrite(root / "covarep.csd", "COVAREP/data/vidA/features", features)
    with pytest.raises(MosiError, match="covarep.csd: id 'vidA' .* NaN or infinite .*nonfinite_to_zero"):
        read_mosi_h5(root, OPTIONS)
    fixed = read_mosi_h5(root, OPTIONS.model_copy(update={"nonfinite_to_zero": True}))
    assert np.isfinite(fixed["audio"][0]).all()


def write_npz(path: Path, n: int = 40, seed: int = 0, **drop: bool) -> Path:
    """Aligned arrays as in the common pickles: left zero padding, labels (N, 1); the score is carried by both."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(-3, 3, size=(n, 1)).astype(np.float32)
    arrays = {"ids": np.array([f"v{i // 3}[{i % 3}]" for i in range(n)]), "labels": y}
    for key, dim in (("text", 5), ("audio", 3), ("vision", 2)):
        x = rng.normal(size=(n, 6, dim)).astype(np.float32) * 0.3 + y[:, :, None]
        x[:, :2] = 0.0  # padding steps
        arrays[key] = x
    for key in drop:
        arrays.pop(key)
    np.savez(path, **arrays)
    return path


def test_read_npz(tmp_path: Path) -> None:
    frame = read_mosi_npz(write_npz(tmp_path / "mosi.npz"), MosiConfig())
    assert list(frame.columns) == ["id", "text", "audio", "vision", "label"]
    assert frame["id"][4] == "v1[1]" and frame["text"][0].shape == (4, 5)  # 2 padding steps dropped
    keep = read_mosi_npz(tmp_path / "mosi.npz", MosiConfig(drop_zero_steps=False))
    assert keep["text"][0].shape == (6, 5)


def test_npz_malformed(tmp_path: Path) -> None:
    with pytest.raises(MosiError, match=r"m.npz: no key 'vision'; keys: audio, ids, labels, text"):
        read_mosi_npz(write_npz(tmp_path / "m.npz", vision=True), MosiConfig())
    path = write_npz(tmp_path / "n.npz")
    arrays = dict(np.load(path))
    arrays["audio"] = arrays["audio"][:-1]
    np.savez(path, **arrays)
    with pytest.raises(MosiError, match=r"n.npz: key 'audio' has shape \(39, 6, 3\); expected \(N, T, D\) with N = 40"):
        read_mosi_npz(path, MosiConfig())


def test_npz_sentiment_training_from_config(tmp_path: Path) -> None:
    for split, seed in (("train", 0), ("val", 1), ("test", 2)):
        write_npz(tmp_path / f"{split}.npz", n=48 if split == "train" else 16, seed=seed)
    config = parse_config({
        "data": {"train": str(tmp_path / "train.npz"), "val": str(tmp_path / "val.npz"),
                 "test": str(tmp_path / "test.npz"), "format": "mosi_npz"},
        "modalities": {m: {"type": "sequence", "encoder": {"name": "sequence_gru", "out_dim": 8, "hidden": 8}}
                       for m in ("text", "audio")},
        "target": {"field": "label", "task": "sentiment"},
        "training": {"epochs": 4, "batch_size": 16, "lr": 0.01, "progress_bar": False, "patience": None},
        "output_dir": str(tmp_path / "run"),
    })
    result = train(config)
    test = result.metrics["test"]
    assert {"acc2", "f1", "acc2_has0", "acc7", "mae", "pearson"} <= set(test)
    assert test["pearson"] > 0.5  # the score is in both sequences: the model learns it


def test_h5_format_from_config_with_folds(tmp_path: Path) -> None:
    from polymodal.data.sources import load_splits

    root = write_mosi(tmp_path)
    config = parse_config({
        "data": {"source": str(root), "format": "mosi_h5", "split": {"column": "split"},
                 "mosi": OPTIONS.model_dump(exclude_defaults=True)},
        "modalities": {"text": {"type": "sequence"}, "audio": {"type": "sequence"}},
        "target": {"field": "label", "task": "sentiment"},
    })
    tables = load_splits(config.data, None)
    assert {s: len(t) for s, t in tables.items()} == {"train": 2, "test": 1}
    assert isinstance(tables["train"].frame, pd.DataFrame)


def test_parquet_with_sequence_cells_needs_no_format(tmp_path: Path) -> None:
    from polymodal.config import SequenceSpec
    from polymodal.data.sources import read_table
    from polymodal.processors.arrays import SequenceProcessor

    frame = read_mosi_npz(write_npz(tmp_path / "m.npz", n=6), MosiConfig())
    frame.assign(text=[x.tolist() for x in frame["text"]]).drop(columns=["audio", "vision"]).to_parquet(
        tmp_path / "m.parquet")
    back = read_table(tmp_path / "m.parquet")
    proc = SequenceProcessor(SequenceSpec(type="sequence"), "text")
    np.testing.assert_allclose(proc.read(back["text"][0], tmp_path)["values"], frame["text"][0], rtol=1e-6)
