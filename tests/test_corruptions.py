"""Corruptions: identity at severity 0, monotone in severity, exact SNR, one draw per record for all modalities."""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np
import pytest

from polymodal.evaluation.corruptions import CORRUPTIONS, FeatureStats, corrupt, record_rng
from polymodal.processors.audio import Waveform

SENTENCE = " ".join(f"word{i} token{i % 7}" for i in range(15))
STATS = FeatureStats(np.array([1.0, -2.0, 0.5]), np.array([2.0, 0.5, 1.0]), ("a", "b", "c"))


def sample(kind: str, record: int) -> tuple[Any, FeatureStats | None]:
    """A raw value of each modality type (different per record) and the statistics to scale by."""
    rng = np.random.default_rng(1000 + record)
    if kind == "image":
        yy, xx = np.mgrid[:32, :40]
        img = (yy * 4 + xx * 2 + 40 * ((yy // 4 + xx // 4) % 2) + rng.integers(0, 30, (32, 40))) % 256
        return (np.stack([img, 255 - img, img // 2], axis=-1) if record % 2 else img).astype(np.uint8), None
    if kind == "audio":
        t = np.arange(2000) / 8000
        return Waveform((0.3 * np.sin(2 * np.pi * (200 + 50 * record) * t)).astype(np.float32), 8000), None
    if kind == "text":
        return SENTENCE, None
    if kind == "tabular":
        return {"a": float(rng.normal(1, 2)), "b": float(rng.normal(-2, .5)), "c": 3, "brand": "x"}, STATS
    if kind == "vector":
        return rng.normal(size=3).astype(np.float32), STATS
    return rng.normal(size=(20, 3)).astype(np.float32), STATS  # sequence


def distance(kind: str, a: Any, b: Any) -> float:
    """How far a corrupted raw value is from the clean one."""
    if kind == "image":
        return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if kind == "audio":
        return float(np.mean((a.samples - b.samples) ** 2))
    if kind == "text":
        return 1.0 - difflib.SequenceMatcher(None, a, b).ratio()
    if kind == "tabular":
        return sum(1.0 if (b[k] is None) != (a[k] is None) else
                   (0.0 if b[k] is None or k == "brand" else (float(a[k]) - float(b[k])) ** 2) for k in a)
    return float(np.mean((a - b) ** 2))


ALL = [(kind, name) for kind, table in CORRUPTIONS.items() for name in table]


def test_every_modality_type_has_its_corruptions() -> None:
    assert {k: set(v) for k, v in CORRUPTIONS.items()} == {
        "image": {"gaussian_noise", "blur", "occlusion", "contrast"},
        "audio": {"noise", "clipping", "time_mask"},
        "text": {"word_dropout", "typos", "word_swap"},
        "tabular": {"gaussian_noise", "feature_dropout"},
        "vector": {"gaussian_noise", "feature_dropout"},
        "sequence": {"time_mask", "gaussian_noise"},
    }
    assert all(len(c.levels) == 5 for table in CORRUPTIONS.values() for c in table.values())


@pytest.mark.parametrize(("kind", "name"), ALL)
def test_severity_zero_is_identity_and_damage_grows_with_severity(kind: str, name: str) -> None:
    fn = CORRUPTIONS[kind][name]
    damage = np.zeros(6)
    for record in range(24):
        raw, stats = sample(kind, record)
        assert distance(kind, raw, fn(raw, 0, record_rng(0, record), stats)) == 0.0
        for s in range(1, 6):
            out = fn(raw, s, record_rng(0, record), stats)
            assert type(out) is type(raw)
            damage[s] += distance(kind, raw, out)
    assert damage[1] > 0
    assert (np.diff(damage[1:]) > 0).all(), damage


@pytest.mark.parametrize(("kind", "name"), ALL)
def test_shapes_and_types_are_kept(kind: str, name: str) -> None:
    raw, stats = sample(kind, 3)
    out = CORRUPTIONS[kind][name](raw, 5, record_rng(0, 3), stats)
    if isinstance(raw, np.ndarray):
        assert out.shape == raw.shape and out.dtype == raw.dtype
    elif isinstance(raw, Waveform):
        assert out.samples.shape == raw.samples.shape and out.rate == raw.rate
    elif isinstance(raw, dict):
        assert list(out) == list(raw)
    else:
        assert out.strip()


def test_noise_matches_the_requested_snr() -> None:
    wave, _ = sample("audio", 0)
    fn = CORRUPTIONS["audio"]["noise"]
    for severity, snr in zip(range(1, 6), fn.levels):
        noisy = fn(wave, severity, record_rng(0, 7), None)
        noise = noisy.samples.astype(np.float64) - wave.samples
        measured = 10 * np.log10(np.mean(wave.samples.astype(np.float64) ** 2) / np.mean(noise**2))
        assert abs(measured - snr) < 1.0


def test_tabular_noise_is_in_fitted_std_units_and_dropout_sets_missing() -> None:
    raw = {"a": 1.0, "b": -2.0, "c": 0.5, "brand": "x"}
    diffs = []
    for record in range(400):
        out = CORRUPTIONS["tabular"]["gaussian_noise"](raw, 5, record_rng(0, record), STATS)  # std 1.0 x fitted std
        diffs.append([out[k] - raw[k] for k in "abc"])
        assert out["brand"] == "x"
    assert np.allclose(np.std(diffs, axis=0), STATS.std, rtol=0.15)
    dropped = CORRUPTIONS["tabular"]["feature_dropout"](raw, 5, record_rng(0, 1), STATS)
    assert all(v is None or v == raw[k] for k, v in dropped.items())
    relative = CORRUPTIONS["tabular"]["gaussian_noise"]({"a": 10.0, "z": 0.0}, 5, record_rng(0, 2), None)
    assert relative["z"] == 0.0 and relative["a"] != 10.0  # no statistics: noise relative to each value


def test_vector_dropout_uses_the_fitted_mean() -> None:
    raw = np.array([5.0, 5.0, 5.0], dtype=np.float32)
    for record in range(20):
        out = CORRUPTIONS["vector"]["feature_dropout"](raw, 5, record_rng(0, record), STATS)
        assert np.all((out == raw) | (out == STATS.mean.astype(np.float32)))


def test_same_seed_and_record_give_identical_draws() -> None:
    for kind, name in ALL:
        raw, stats = sample(kind, 2)
        a = CORRUPTIONS[kind][name](raw, 4, record_rng(5, 2), stats)
        b = CORRUPTIONS[kind][name](raw, 4, record_rng(5, 2), stats)
        assert distance(kind, a, b) == 0.0, (kind, name)
    assert record_rng(5, 2).random() == record_rng(5, 2).random()
    assert record_rng(5, 2).random() != record_rng(5, 3).random() != record_rng(6, 2).random()


def test_paired_modalities_are_masked_over_the_same_stretch() -> None:
    """A clip and its feature sequence, each corrupted from the record's generator, lose the same time span."""
    for record in range(10):
        clip = Waveform(np.ones(2000, dtype=np.float32), 8000)
        steps = np.ones((20, 2), dtype=np.float32)
        for s in range(1, 6):
            audio = CORRUPTIONS["audio"]["time_mask"](clip, s, record_rng(0, record), None).samples
            seq = CORRUPTIONS["sequence"]["time_mask"](steps, s, record_rng(0, record), None)[:, 0]
            a, q = np.flatnonzero(audio == 0), np.flatnonzero(seq == 0)
            assert len(a) == 100 * len(q)
            assert abs(a[0] / 100 - q[0]) < 1


def test_corrupt_scales_by_the_processor_and_names_what_exists() -> None:
    from polymodal.config import VectorSpec
    from polymodal.processors import build_processor

    proc = build_processor(VectorSpec(type="vector"), "emb")
    proc.fit_items([{"values": np.array([0.0, 0.0, 0.0], np.float32)}, {"values": np.array([4.0, 2.0, 2.0], np.float32)}])
    out = corrupt(proc, "feature_dropout", np.full(3, 9.0, np.float32), 5, record_rng(0, 0))
    assert set(out.tolist()) <= {9.0, 2.0, 1.0}
    with pytest.raises(KeyError, match="no corruption 'blur' for vector"):
        corrupt(proc, "blur", np.zeros(3, np.float32), 1, record_rng(0, 0))
    with pytest.raises(ValueError, match="severity"):
        CORRUPTIONS["vector"]["gaussian_noise"](np.zeros(3, np.float32), 6, record_rng(0, 0))


def test_every_processor_reads_as_features_of_its_raw_signal(data_dir: Any) -> None:
    """`read == features(decode_raw)`, and decode_raw gives what the corruptions of its type take."""
    import pandas as pd
    from conftest import make_config

    from polymodal.data.dataset import build_pipeline, fit_raw
    from polymodal.data.sources import Table
    from polymodal.factory import parse_config

    config = parse_config(make_config(data_dir, data_dir / "unused"))
    processors, task = build_pipeline(config)
    table = Table(pd.read_parquet(data_dir / "data.parquet").head(6), data_dir, "t")
    fit_raw(table, processors, task)
    raw_type = {"image": np.ndarray, "audio": Waveform, "text": str, "tabular": dict, "vector": np.ndarray,
                "sequence": np.ndarray}
    for proc in processors.values():
        for value in proc.values(table.frame):
            raw = proc.decode_raw(value, data_dir)
            assert isinstance(raw, raw_type[proc.kind]), proc.kind
            read, split = proc.read(value, data_dir), proc.features(raw)
            assert all(np.array_equal(read[k], split[k], equal_nan=read[k].dtype.kind == "f") for k in read)
            cut = 1 if proc.ragged else 0  # ragged arrays keep their width, fixed ones their whole shape
            for name in CORRUPTIONS[proc.kind]:
                corrupted = proc.features(corrupt(proc, name, raw, 5, record_rng(0, 0)))
                assert {k: v.shape[cut:] for k, v in corrupted.items()} == {k: v.shape[cut:] for k, v in read.items()}
