from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from polymodal.config import AudioSpec, ImageSpec, SequenceSpec, TabularSpec, TextSpec, VectorSpec
from polymodal.errors import RecordError
from polymodal.processors import build_processor
from polymodal.processors.audio import log_mel, mel_filterbank, resample


def test_image_decode_resize_normalize(tmp_path: Path) -> None:
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "a.png")
    proc = build_processor(ImageSpec(type="image", size=16, channels=3), "photo")
    item = proc.read("a.png", tmp_path)
    assert item["pixels"].shape == (3, 16, 16) and item["pixels"][0].min() == 255
    proc.fit_items([item, {"pixels": np.zeros((3, 16, 16), np.uint8)}])
    x = proc.to_model({"pixels": torch.from_numpy(item["pixels"])[None]}, train=False)["pixels"]
    assert x.shape == (1, 3, 16, 16) and torch.isfinite(x).all()
    restored = build_processor(ImageSpec(type="image", size=16, channels=3), "photo")
    restored.load_state(proc.state())
    assert torch.equal(restored.to_model({"pixels": torch.from_numpy(item["pixels"])[None]}, False)["pixels"], x)


def test_image_train_augmentation_changes_pixels_but_not_shape(tmp_path: Path) -> None:
    proc = build_processor(ImageSpec(type="image", size=16, channels=1), "photo")
    pixels = torch.randint(0, 255, (8, 1, 16, 16), dtype=torch.uint8)
    torch.manual_seed(0)
    aug = proc.to_model({"pixels": pixels}, train=True)["pixels"]
    assert aug.shape == (8, 1, 16, 16)
    assert not torch.equal(aug, proc.to_model({"pixels": pixels}, train=False)["pixels"])


def test_corrupt_and_missing_image_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    proc = build_processor(ImageSpec(type="image"), "photo")
    with pytest.raises(RecordError, match="cannot decode image .*bad.png"):
        proc.read("bad.png", tmp_path)
    with pytest.raises(RecordError, match="gone.png' does not exist"):
        proc.read("gone.png", tmp_path)


def test_text_vocabulary_from_training_texts_and_truncation() -> None:
    proc = build_processor(TextSpec(type="text", max_length=3, vocab_size=50), "t")
    proc.fit(["the cat sat", "the dog ran far away"], Path("."))
    ids = proc.read("The cat ran far away", Path("."))["ids"]
    assert ids.shape == (3,) and (ids > 1).all()  # lowercased, known tokens, truncated
    restored = build_processor(TextSpec(type="text", max_length=3, vocab_size=50), "t")
    restored.load_state(proc.state())
    assert np.array_equal(restored.read("the cat ran", Path("."))["ids"], proc.read("the cat ran", Path("."))["ids"])
    assert proc.encoder_inputs()["vocab_size"] <= 50


def test_audio_mono_resample_logmel(tmp_path: Path) -> None:
    t = np.arange(16000) / 16000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1).astype(np.float32)
    sf.write(tmp_path / "a.flac", stereo, 16000)
    proc = build_processor(AudioSpec(type="audio", sample_rate=8000, n_mels=20, max_seconds=0.5), "a")
    mel = proc.read("a.flac", tmp_path)["mel"]
    assert mel.shape == ((4000 - 256) // 80 + 1, 20)  # 0.5 s at 8 kHz, 256-point frames every 10 ms
    peak_band = int(mel.mean(0).argmax())
    fb = mel_filterbank(8000, 256, 20)
    assert fb[peak_band].argmax() == pytest.approx(440 / (4000 / 128), abs=3)


def test_resample_keeps_a_tone() -> None:
    t = np.arange(8000) / 8000
    y = resample(np.sin(2 * np.pi * 100 * t).astype(np.float32), 8000, 16000)
    assert y.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(y))
    assert spectrum.argmax() == 100


def test_log_mel_of_short_clip() -> None:
    assert log_mel(np.zeros(10, np.float32), 8000, 8).shape == (1, 8)


def test_log_mel_hop_keeps_every_other_window_and_the_export_agrees() -> None:
    from polymodal.export.preprocess import log_mel as exported_log_mel

    wave = np.random.default_rng(0).normal(size=8000).astype(np.float32)
    every_10, every_20 = log_mel(wave, 8000, 16), log_mel(wave, 8000, 16, hop_ms=20)
    assert every_10.shape == (97, 16) and every_20.shape == (49, 16)  # (8000 - 256) // hop + 1 windows
    np.testing.assert_allclose(every_20, every_10[::2], atol=1e-5)
    np.testing.assert_allclose(exported_log_mel(wave, 8000, 16, 20.0), every_20, atol=1e-3)


def test_corrupt_audio_is_a_record_error(tmp_path: Path) -> None:
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEjunk")
    proc = build_processor(AudioSpec(type="audio"), "a")
    with pytest.raises(RecordError, match="cannot decode audio .*bad.wav"):
        proc.read("bad.wav", tmp_path)


def test_tabular_standardize_indicator_unknown_bucket() -> None:
    proc = build_processor(TabularSpec(type="tabular", numeric=["x"], categorical=["c"]), "t")
    train = [{"x": 1.0, "c": "a"}, {"x": 3.0, "c": "b"}]
    proc.fit(train, Path("."))
    proc.fit_items([proc.read(v, Path(".")) for v in train])
    item = proc.read({"x": float("nan"), "c": "zzz"}, Path("."))
    assert item["categorical"].tolist() == [0]
    out = proc.to_model({k: torch.from_numpy(v)[None] for k, v in item.items()}, train=False)
    assert out["numeric"].tolist() == [[0.0, 1.0]]  # standardized value 0, missing indicator 1
    known = proc.to_model({k: torch.from_numpy(v)[None] for k, v in proc.read({"x": 3.0, "c": "b"}, Path(".")).items()}, False)
    assert known["numeric"].tolist() == [[1.0, 0.0]] and proc.read({"x": 3.0, "c": "b"}, Path("."))["categorical"].tolist() == [2]
    with pytest.raises(RecordError, match="numeric column 'x' holds 'cheap'"):
        proc.read({"x": "cheap", "c": "a"}, Path("."))


def test_vector_from_list_json_and_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.arange(3, dtype=np.float32))
    proc = build_processor(VectorSpec(type="vector"), "v")
    items = [proc.read([0, 1, 2], tmp_path), proc.read("[0, 1, 2]", tmp_path), proc.read("v.npy", tmp_path)]
    assert all(np.array_equal(i["values"], items[0]["values"]) for i in items)
    proc.fit_items(items + [{"values": np.ones(5, np.float32)}])
    assert proc.dim == 3
    with pytest.raises(RecordError, match="5 values; the training data has 3"):
        proc.check({"values": np.ones(5, np.float32)})
    with pytest.raises(RecordError, match="NaN"):
        proc.read([1.0, float("nan"), 2.0], tmp_path)


def test_sequence_varying_length_and_width_check() -> None:
    proc = build_processor(SequenceSpec(type="sequence", max_length=4), "s")
    items = [proc.read(np.ones((t, 2)).tolist(), Path(".")) for t in (2, 6)]
    assert [i["values"].shape for i in items] == [(2, 2), (4, 2)]
    proc.fit_items(items)
    with pytest.raises(RecordError, match="3 features per step"):
        proc.check(proc.read(np.ones((2, 3)).tolist(), Path(".")))


def test_vector_cells_written_by_pandas_parse() -> None:
    proc = build_processor(VectorSpec(type="vector"), "v")
    assert proc.read("[ 1.5 -0.25  3. ]", Path("."))["values"].tolist() == [1.5, -0.25, 3.0]
    with pytest.raises(RecordError, match="cannot parse"):
        proc.read("[1, two]", Path("."))


def test_device_statistics_belong_to_their_processor() -> None:
    import gc
    import weakref

    proc = build_processor(VectorSpec(type="vector"), "emb")
    proc.fit_items([{"values": np.array([1.0, 2.0], dtype=np.float32)}, {"values": np.array([3.0, 6.0], dtype=np.float32)}])
    x = torch.tensor([[2.0, 4.0]])
    assert torch.allclose(proc.to_model({"values": x}, train=False)["values"], torch.zeros(1, 2))
    mean = proc.stats("mean", x)
    proc.mean = [0.0, 0.0]  # new state (load_state): the tensor follows it
    assert proc.stats("mean", x).tolist() == [0.0, 0.0]
    freed = weakref.ref(mean)
    del proc, mean
    gc.collect()
    assert freed() is None  # no process-wide cache keeps it
