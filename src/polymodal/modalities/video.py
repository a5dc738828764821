"""Video: a clip file decoded with PyAV, frames sampled over time and resized to size x size.

A clip's audio track is a modality of its own: declare an `audio` modality with `source: video` on the same field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from polymodal.modalities.base import FILE_FORM, Modality, ServerInput, Unsupported, file_schema, register
from polymodal.schema import Component, ModalityBase


class VideoSpec(ModalityBase):
    type: Literal["video"]
    num_frames: int = Field(8, ge=1, description="frames sampled per clip (fewer if the clip has fewer)")
    fps: float | None = Field(None, gt=0, description="rate the clip is read at before sampling; null: the file's")
    clip_seconds: float | None = Field(10.0, gt=0, description="seconds from the start that are decoded and sampled "
                                                               "from; null: the whole video")
    sampling: Literal["uniform", "random", "head"] = Field(
        "uniform", description="uniform: evenly spaced over the clip | random: the same grid at a random offset "
                               "while training, centred at evaluation (keeps every frame read in memory: set fps "
                               "to bound it) | head: the first num_frames frames")
    size: int = Field(32, ge=8, description="frames are resized to size x size")
    channels: Literal[1, 3] = 3
    augment: bool = Field(True, description="random shift and brightness jitter while training (one draw per clip)")


def describe(spec: VideoSpec, state: str) -> str:
    mode = "grey" if spec.channels == 1 else "RGB"
    rate = f"read at {spec.fps} frames per second" if spec.fps else "read at the file's frame rate"
    clip = f"the first {spec.clip_seconds} s" if spec.clip_seconds else "the whole clip"
    picked = {"uniform": "the centres of equal stretches", "random": "the centres of equal stretches (evaluation)",
              "head": "the first frames"}[spec.sampling]
    return (f"frames (B, T, {spec.channels}, {spec.size}, {spec.size}) float32, T <= {spec.num_frames}: decode "
            f"{clip} ({mode}, each frame resized to {spec.size}x{spec.size}), {rate}, keep {spec.num_frames} frames "
            f"at {picked}, then (uint8 / 255 - mean[c]) / std[c] (mean/std: {state}), padding frames 0; "
            "mask (B, T) bool: True for real frames")


VIDEO = register(Modality(
    name="video",
    spec=VideoSpec,
    processor="polymodal.processors.video:VideoProcessor",
    encoder=Component(name="video_cnn_pool"),
    corruptions=Unsupported("no corruption of clips yet; robustness curves skip video modalities"),
    server=ServerInput("file", file_schema("video"), FILE_FORM),
    describe=describe,
    preprocess=Unsupported("decoding video files (PyAV) is not reproduced in the export's numpy preprocessing; "
                           "feed the frames input yourself, as the manifest's description says"),
    extensions=(".mp4", ".avi", ".mov", ".mkv", ".webm"),
))
