"""The built-in AV-Digits dataset: checksum, determinism, disjoint voices, the quickstart end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from polymodal.datasets.av_digits import load_source, materialize_av_digits


@pytest.fixture(scope="module")
def av_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return materialize_av_digits(tmp_path_factory.mktemp("avd") / "mnist")


def test_source_arrays_and_checksum() -> None:
    src = load_source()
    assert src["images"].shape == (5000, 28, 28) and np.bincount(src["image_labels"]).tolist() == [500] * 10
    assert len(src["clip_offsets"]) == len(src["clip_labels"]) + 1
    assert src["speaker_is_human"].any() and (~src["speaker_is_human"]).sum() >= 30


def test_records_splits_and_files(av_root: Path) -> None:
    records = pd.read_csv(av_root / "records.csv")
    assert records["split"].value_counts().to_dict() == {"train": 3500, "val": 750, "test": 750}
    assert (records.groupby("split")["label"].nunique() == 10).all()
    human = pd.read_csv(av_root / "human.csv")
    assert len(human) == 750
    first = records.iloc[0]
    assert Image.open(av_root / first["image"]).size == (28, 28)
    assert (av_root / first["audio"]).stat().st_size > 1000


def test_materialization_is_deterministic(av_root: Path, tmp_path: Path) -> None:
    again = materialize_av_digits(tmp_path / "again")
    assert pd.read_csv(again / "records.csv").equals(pd.read_csv(av_root / "records.csv"))
    for name in ("images/r00017.png", "audio/r04321.wav", "audio/h00042.wav"):
        assert (again / name).read_bytes() == (av_root / name).read_bytes(), name


def test_voices_are_disjoint_across_splits() -> None:
    from polymodal.datasets.av_digits import _voice_split

    src = load_source()
    split = _voice_split(src, np.random.default_rng(0))
    assert set(split[src["speaker_is_human"]]) == {"human"}
    assert set(split[~src["speaker_is_human"]]) == {"train", "val", "test"}


def test_quickstart_trains_side_by_side_with_one_thread_each(monkeypatch: pytest.MonkeyPatch) -> None:
    from polymodal.apps import quickstart

    assert quickstart.plan_processes(1, 4) == (1, 1)  # a busy machine: one model at a time, one thread
    assert quickstart.plan_processes(2, 4) == (4, 1)  # two idle cores: every model at once, sharing them
    assert quickstart.plan_processes(3, 4) == (4, 1)
    assert quickstart.plan_processes(8, 4) == (4, 2)  # never more processes than models
    monkeypatch.setattr(quickstart, "can_fork", lambda: False)
    assert quickstart.plan_processes(2, 4) == (1, 2)  # no fork: one process with the threads


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from polymodal.apps import quickstart
    from polymodal.cli import main
    from polymodal.datasets import DATASETS
    from polymodal.predictor import Predictor

    monkeypatch.setenv("POLYMODAL_THREADS", "2")  # worker processes, whatever the machine's load
    threads = torch.get_num_threads()
    try:
        assert main(["quickstart", "--out", str(tmp_path / "qs"), "--epochs", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    table = pd.read_csv(tmp_path / "qs" / "comparison.csv")
    assert list(table.columns) == ["model", "accuracy", "macro_f1", "params", "train_seconds"]
    assert table["model"].tolist() == ["image", "audio", "concat", "late"]
    for model in table["model"]:
        assert (tmp_path / "qs" / model / "model.safetensors").is_file()
    out = capsys.readouterr().out
    assert "best unimodal model" in out and "*" in out and "in 4 process(es)" in out
    audio = Predictor.load(tmp_path / "qs" / "audio").run.config.modalities["audio"]  # the quick audio front-end
    assert (audio.hop_ms, audio.n_mels) == (quickstart.QUICK_AUDIO["hop_ms"], quickstart.QUICK_AUDIO["n_mels"]) != (10, 32)
    late = next(line for line in out.splitlines() if line.startswith("late "))
    human = Predictor.load(tmp_path / "qs" / "late").evaluate(DATASETS["av_digits"].materialize() / "human.csv")
    assert float(late.split()[-1]) == pytest.approx(human["accuracy"], abs=1e-4)  # decoded once, same accuracy


def test_human_speakers_name_the_voice_in_each_human_file(av_root: Path) -> None:
    import soundfile as sf

    from polymodal.datasets.av_digits import HUMAN_DEV_SPEAKERS, human_speakers

    src = load_source()
    human = pd.read_csv(av_root / "human.csv")
    speakers = human_speakers()
    assert speakers.index.tolist() == human["id"].tolist()
    names = list(src["speakers"][src["speaker_is_human"]])
    assert set(speakers) == set(names) and set(HUMAN_DEV_SPEAKERS) < set(names)
    offsets = src["clip_offsets"]
    for row in human.iloc[[3, 250, 600]].itertuples():
        wave, _ = sf.read(av_root / row.audio, dtype="float32")
        clips = np.flatnonzero((src["clip_labels"] == row.label) & src["speaker_is_human"][src["clip_speaker"]])
        peaks = {}
        for c in clips:  # the clip that is in the file (at an offset, under noise) correlates best with it
            clip = src["audio"][offsets[c]: offsets[c + 1]].astype(np.float32)
            peaks[src["speakers"][src["clip_speaker"][c]]] = np.abs(np.correlate(wave, clip / np.linalg.norm(clip),
                                                                                  "valid")).max()
        assert max(peaks, key=lambda k: peaks[k]) == speakers[row.id]
