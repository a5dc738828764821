"""Video: decode with PyAV (imported lazily), resize frames while decoding, sample frames over time, normalize.

A clip's audio track is not part of this modality: declare an `audio` modality with `source: video` on the same
field, so that frames and sound are two modalities to the fusion (and to baselines, robustness and contribution).
`read_audio_track` below is what that audio processor calls.

Sampling (`VideoSpec.sampling`) picks `num_frames` from the frames read at `fps` within the first `clip_seconds`:
`uniform` takes the centres of `num_frames` equal stretches, `head` the first `num_frames`, and `random` keeps
every frame read so that each training batch draws one random offset of the uniform grid per clip (evaluation
uses the centred grid, i.e. `uniform`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from polymodal.config import VideoSpec
from polymodal.errors import RecordError
from polymodal.processors.base import Arrays, Processor, file_source
from polymodal.processors.image import random_shift

Source = Path | io.BytesIO


class Clip(NamedTuple):
    """Decoded frames: (N, H, W, C) uint8 already at the processor's size, and their times (N,) in seconds."""

    frames: np.ndarray
    times: np.ndarray


class VideoProcessor(Processor):
    kind = "video"
    ragged = True
    spec: VideoSpec

    def __init__(self, spec: VideoSpec, field: str) -> None:
        super().__init__(spec, field)
        self.mean = [0.5] * spec.channels
        self.std = [0.25] * spec.channels

    def decode_raw(self, value: Any, root: Path) -> Clip:
        """Every frame of the first `clip_seconds`, resized to size x size as it is decoded."""
        source, name = file_source(value, root, self.allow_outside_root)
        return read_frames(source, name, self.spec.size, self.spec.channels, self.spec.clip_seconds)

    def features(self, raw: Clip) -> Arrays:
        frames = raw.frames[at_rate(raw.times, self.spec.fps)] if self.spec.fps else raw.frames  # (L, H, W, C)
        n, length = self.spec.num_frames, frames.shape[0]
        if self.spec.sampling == "head":
            frames = frames[:n]
        elif self.spec.sampling == "uniform":
            frames = frames[grid(length, n, 0.5)]
        return {"frames": np.ascontiguousarray(frames.transpose(0, 3, 1, 2))}  # (T, C, H, W)

    def blank(self) -> Arrays:
        return {"frames": np.zeros((1, self.spec.channels, self.spec.size, self.spec.size), dtype=np.uint8)}

    def fit_items(self, items: list[Arrays]) -> None:
        """Per-channel mean and std over every frame, accumulated item by item (no giant stack)."""
        total, sq, count = np.zeros(self.spec.channels), np.zeros(self.spec.channels), 0
        for it in items:
            x = it["frames"].astype(np.float64) / 255.0  # (T, C, H, W)
            total += x.sum(axis=(0, 2, 3))
            sq += (x**2).sum(axis=(0, 2, 3))
            count += x.shape[0] * x.shape[2] * x.shape[3]
        mean = total / max(count, 1)
        std = np.sqrt(np.maximum(sq / max(count, 1) - mean**2, 0.0))
        self.mean, self.std = mean.tolist(), np.maximum(std, 1e-6).tolist()

    def encoder_inputs(self) -> dict[str, Any]:
        return {"in_channels": self.spec.channels}

    def to_model(self, inputs: dict[str, Tensor], train: bool) -> dict[str, Tensor]:
        frames, mask = inputs["frames"], inputs["mask"]  # (B, L, C, H, W) uint8, (B, L)
        if self.spec.sampling == "random":
            frames, mask = sample_batch(frames, mask, self.spec.num_frames, random_offset=train)
        x = frames.float() / 255.0  # (B, T, C, H, W)
        if train and self.spec.augment:
            x = augment_clips(x, max_shift=max(1, self.spec.size // 14))
        mean = self.stats("mean", x).view(1, 1, -1, 1, 1)
        std = self.stats("std", x).view(1, 1, -1, 1, 1)
        x = (x - mean) / std * mask[:, :, None, None, None]  # padding frames stay 0
        return {"frames": x, "mask": mask}

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = state["mean"], state["std"]


def grid(length: int, n: int, offset: float) -> np.ndarray:
    """Indices of min(n, length) evenly spaced frames of `length`, each at `offset` (0..1) into its stretch."""
    k = min(n, length)
    return np.floor((np.arange(k) + offset) * length / k).astype(np.int64)


def at_rate(times: np.ndarray, fps: float) -> np.ndarray:
    """Indices of the frames on screen at times 0, 1/fps, 2/fps... up to the last frame (repeats if fps is
    above the file's rate)."""
    targets = np.arange(0.0, times[-1] + 1e-9, 1.0 / fps)  # (L,)
    return np.clip(np.searchsorted(times, targets + 1e-9, side="right") - 1, 0, len(times) - 1)


def sample_batch(frames: Tensor, mask: Tensor, n: int, random_offset: bool) -> tuple[Tensor, Tensor]:
    """`grid` per clip on a padded batch: (B, L, C, H, W) + (B, L) -> (B, T, C, H, W) + (B, T), T <= n.

    One offset per clip, uniform in [0, 1) when `random_offset`, else 0.5 (the centred grid)."""
    lengths = mask.sum(1).clamp_min(1)  # (B,)
    count = lengths.clamp_max(n)  # (B,)
    b, t = frames.shape[0], int(count.max())
    if random_offset:
        offset = torch.rand(b, 1, device=frames.device)
    else:
        offset = torch.full((b, 1), 0.5, device=frames.device)
    k = torch.arange(t, device=frames.device)[None]  # (1, T)
    idx = torch.floor((k + offset) * lengths[:, None] / count[:, None]).long()  # (B, T)
    keep = k < count[:, None]  # (B, T)
    idx = torch.where(keep, idx.clamp_max(frames.shape[1] - 1), 0)
    picked = frames[torch.arange(b, device=frames.device)[:, None], idx]  # (B, T, C, H, W)
    return picked, keep & mask.gather(1, idx)


def augment_clips(x: Tensor, max_shift: int) -> Tensor:
    """The same random shift and brightness factor for every frame of a clip: (B, T, C, H, W) -> same shape."""
    b, t, c, h, w = x.shape
    shifted = random_shift(x.reshape(b, t * c, h, w), max_shift).reshape(b, t, c, h, w)
    return shifted * torch.empty(b, 1, 1, 1, 1, device=x.device).uniform_(0.8, 1.2)


def import_av() -> Any:
    """PyAV, an optional dependency (the `apps` extra), imported on first use."""
    try:
        import av
    except ImportError:
        raise ImportError("video modalities need PyAV: pip install 'polymodal[apps]' (or pip install av)") from None
    return av


def open_video(source: Source, name: str) -> Any:
    """An open PyAV container; RecordError naming the file if it cannot be opened."""
    av = import_av()
    try:
        return av.open(source if isinstance(source, io.BytesIO) else str(source))
    except (av.FFmpegError, OSError, ValueError) as err:
        raise RecordError(f"cannot decode video {name} ({type(err).__name__}: {err})") from None


def read_frames(source: Source, name: str, size: int, channels: int, seconds: float | None) -> Clip:
    """Frames of the first video stream within `seconds` of its first frame, resized to size x size."""
    av = import_av()
    fmt = "gray" if channels == 1 else "rgb24"
    frames: list[np.ndarray] = []
    times: list[float] = []
    with open_video(source, name) as container:
        if not container.streams.video:
            raise RecordError(f"video {name} has no video stream")
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        try:
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else len(frames) / rate
                if times and seconds is not None and t - times[0] >= seconds:
                    break
                pixels = frame.to_ndarray(width=size, height=size, format=fmt)  # (H, W) or (H, W, 3)
                frames.append(pixels.reshape(size, size, channels))
                times.append(t)
        except (av.FFmpegError, OSError, ValueError) as err:
            raise RecordError(f"cannot decode video {name} ({type(err).__name__}: {err})") from None
    if not frames:
        raise RecordError(f"video {name} has no frames")
    return Clip(np.stack(frames), np.asarray(times) - times[0])


def read_audio_track(source: Source, name: str, seconds: float | None = None) -> tuple[np.ndarray, int]:
    """The first audio stream of a video file as (N, 1) float32 mono samples and their rate."""
    av = import_av()
    chunks: list[np.ndarray] = []
    with open_video(source, name) as container:
        if not container.streams.audio:
            raise RecordError(f"video {name} has no audio track")
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or stream.rate)
        mono = av.AudioResampler(format="flt", layout="mono", rate=rate)
        limit = None if seconds is None else int(seconds * rate)
        try:
            for frame in container.decode(stream):
                chunks += [out.to_ndarray().reshape(-1) for out in mono.resample(frame)]
                if limit is not None and sum(c.size for c in chunks) >= limit:
                    break
            chunks += [out.to_ndarray().reshape(-1) for out in mono.resample(None)]
        except (av.FFmpegError, OSError, ValueError) as err:
            raise RecordError(f"cannot decode the audio track of video {name} ({type(err).__name__}: {err})") \
                from None
    wave = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    return wave[:limit, None].astype(np.float32, copy=False), rate
