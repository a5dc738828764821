"""Video-Digits: short mp4 clips of a moving MNIST digit with a spoken digit on the audio track.

Built at materialize time from the arrays that ship with AV-Digits (`data/av_digits.npz`) and written with PyAV
as real mp4 files (H.264 video, AAC audio), one per record, plus `records.csv` with columns
`id, video, label, split, direction, spoken, shown`.

Each clip is 16 grey 32x32 frames at 16 fps (1 s): a 16x16 digit drifts right, left, up or down at 1 or 2 pixels
per frame on a wrap-around canvas, starting at a uniformly random place. Its audio track is one spoken digit
(0-9) at a random offset with mild noise. The label is `<direction>-<spoken digit>` (40 classes):

- the direction needs time: because the canvas wraps around and the start is uniform, the digit's position in
  any single frame is uniform whatever the direction, so one frame tells nothing about it;
- neither stream alone is enough: the frames give the direction but not the spoken digit (the digit shown is
  drawn independently of the one spoken, a distractor), the audio gives the spoken digit but not the direction.

So a perfect frames-only model is at most 1/10 accurate, an audio-only or a single-frame model at most 1/4 (times
how well it hears the digit), and only a model that fuses audio with frames over time can solve it.
Voices are split by speaker (train/val/test disjoint; real human speakers unused) and digit images by split.
Everything is seeded: the same seed gives the same arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from polymodal.datasets.av_digits import _stratified_split, _voice_split, load_source
from polymodal.datasets.staging import dataset_root, materialize

VERSION = 1
FRAMES, FPS, SIZE, DIGIT = 16, 16, 32, 16
DIRECTIONS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}  # (dy, dx) per step
SNR_DB = (10.0, 20.0)


def materialize_video_digits(root: Path | None = None, counts: tuple[int, int, int] = (1600, 300, 300),
                             seed: int = 0) -> Path:
    """Write `counts` (train, val, test) clips and `records.csv` under `root`; return the folder.

    Reuses an existing complete copy.
    """
    src = load_source()
    key = f"{str(src['checksum'])[:8]}_{'_'.join(map(str, counts))}_s{seed}"
    return materialize(root or dataset_root("video_digits", VERSION, key),
                       lambda tmp: _write_dataset(tmp, src, counts, seed))


def _write_dataset(tmp: Path, src: dict[str, np.ndarray], counts: tuple[int, int, int], seed: int) -> None:
    (tmp / "videos").mkdir()
    rng = np.random.default_rng(seed)
    frame = _records(src, counts, rng)
    digits = _small_digits(src["images"])
    for rec in frame.itertuples():
        frames = moving_digit(digits[rec.image_index], DIRECTIONS[rec.direction], rng)
        wave = _spoken(src, rec.clip, rng)
        write_clip(tmp / rec.video, frames, FPS, wave, int(src["sample_rate"]))
    frame.drop(columns=["image_index", "clip"]).to_csv(tmp / "records.csv", index=False)


def _records(src: dict[str, np.ndarray], counts: tuple[int, int, int], rng: np.random.Generator) -> pd.DataFrame:
    """Per split: balanced directions and spoken digits, a clip of that digit from the split's voices and an
    independent digit image from the split's images."""
    image_split = _stratified_split(src["image_labels"], rng)
    clip_split = _voice_split(src, rng)[src["clip_speaker"]]
    rows = []
    for split, n in zip(("train", "val", "test"), counts):
        images = np.flatnonzero(image_split == split)
        for k in rng.permutation(n):
            direction, spoken = list(DIRECTIONS)[k % 4], int(k // 4 % 10)
            clip = int(rng.choice(np.flatnonzero((clip_split == split) & (src["clip_labels"] == spoken))))
            image = int(rng.choice(images))
            rows.append((image, clip, f"{direction}-{spoken}", split, direction, spoken,
                         int(src["image_labels"][image])))
    frame = pd.DataFrame(rows, columns=["image_index", "clip", "label", "split", "direction", "spoken", "shown"])
    frame.insert(0, "id", [f"v{k:05d}" for k in range(len(frame))])
    frame.insert(1, "video", [f"videos/{r}.mp4" for r in frame["id"]])
    return frame


def _small_digits(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) -> (N, DIGIT, DIGIT) uint8."""
    return np.stack([np.asarray(Image.fromarray(im).resize((DIGIT, DIGIT), Image.Resampling.BILINEAR))
                     for im in images])


def moving_digit(digit: np.ndarray, step: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(FRAMES, SIZE, SIZE) uint8: the digit drifting by `step` x (1 or 2) pixels per frame on a wrap-around
    canvas from a uniformly random start, so that each single frame's position is independent of the step."""
    canvas = np.zeros((SIZE, SIZE), dtype=np.uint8)
    canvas[:DIGIT, :DIGIT] = digit
    start = rng.integers(0, SIZE, size=2)
    speed = int(rng.integers(1, 3))
    t = np.arange(FRAMES)
    return np.stack([np.roll(canvas, (int(start[0] + step[0] * speed * i), int(start[1] + step[1] * speed * i)),
                             axis=(0, 1)) for i in t])


def _spoken(src: dict[str, np.ndarray], clip: int, rng: np.random.Generator) -> np.ndarray:
    """The clip at a random offset in a 1 s track with white noise at 10..20 dB SNR: (rate,) float32."""
    rate, offsets = int(src["sample_rate"]), src["clip_offsets"]
    wave = src["audio"][offsets[clip]: offsets[clip + 1]].astype(np.float32) / 32768.0
    length = max(rate * FRAMES // FPS, wave.size)
    out = np.zeros(length, dtype=np.float32)
    start = int(rng.integers(0, length - wave.size + 1))
    out[start: start + wave.size] = wave
    power = float(np.mean(wave**2)) + 1e-10
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (rng.uniform(*SNR_DB) / 10)), size=length)
    out = out + noise.astype(np.float32)
    return (out / max(1.0, float(np.abs(out).max()))).astype(np.float32)


def write_clip(path: Path, frames: np.ndarray, fps: int, wave: np.ndarray | None, rate: int) -> None:
    """An mp4 file: (T, H, W) grey uint8 frames as H.264 and, if given, a mono (N,) float track as AAC."""
    from polymodal.processors.video import import_av

    av = import_av()
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"crf": "12", "preset": "fast"})
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        video.codec_context.thread_count = 1
        audio = container.add_stream("aac", rate=rate, layout="mono") if wave is not None else None
        for pixels in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="gray")))
        container.mux(video.encode())
        if audio is not None and wave is not None:
            chunk = audio.codec_context.frame_size or 1024
            for start in range(0, wave.size, chunk):
                frame = av.AudioFrame.from_ndarray(wave[None, start: start + chunk], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = rate, start
                container.mux(audio.encode(frame))
            container.mux(audio.encode())
