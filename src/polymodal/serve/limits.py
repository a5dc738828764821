"""Decoding limits of the server: file headers are read and checked before any file is decoded.

A request's images, audio and video are looked at through their headers only (Pillow's lazy open, libsndfile's
`info`, PyAV's container metadata): declared pixels, channels, duration, sample rate and frames are compared with
the limits, and a file over a limit is refused (413 too large, 422 a declared value no decoder should accept)
without decoding a byte of its content. What passes has a memory cost, estimated from the same header; decoding
waits until the request's cost fits in the server's decode memory budget (`DecodeBudget`), so concurrent
requests cannot decode more than that at once.

Defaults come from the run's processors: a model that sees 64 px images has no use for 100 megapixels, a model
that reads 2 s of audio none for an hour.
"""

from __future__ import annotations

import asyncio
import io
import math
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from polymodal.processors import Processor
from polymodal.serve.inputs import InputField, Problem, RequestError

T = TypeVar("T")
MB = 1024 * 1024
_IMAGE_BYTES_PER_PIXEL = 12  # Pillow's decoded frame (4) + the converted copy (4) + the numpy array (up to 4)
_AUDIO_BYTES_PER_SAMPLE = 16  # float32 read, its mono mix, the resampled signal, slack for the filter
_MAX_RESAMPLE_FACTOR = 48_000  # up or down factor of the polyphase resampler (its filter has 20x as many taps)


@dataclass(frozen=True)
class DecodeLimits:
    """What a request's files may declare; `None` in `ServeSettings` means the default derived from the run."""

    max_image_pixels: int  # width x height of an image, and of a video frame
    max_audio_seconds: float  # declared duration of an audio file
    max_sample_rate: int  # declared sample rate, Hz
    max_channels: int  # image bands, audio channels
    max_video_frames: int  # declared frames of a video
    decode_memory_mb: float  # decoding memory shared by all requests at once

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def default_limits(processors: Mapping[str, Processor]) -> DecodeLimits:
    """Limits that fit what the run's processors read (each at least what ordinary files need)."""
    sizes = [int(p.spec.size) for p in processors.values() if p.kind in ("image", "video")]
    seconds = [float(p.spec.max_seconds) for p in processors.values() if p.kind == "audio"]
    clips = [float(p.spec.clip_seconds or 60.0) for p in processors.values() if p.kind == "video"]
    return DecodeLimits(
        max_image_pixels=max([4096 * 3072] + [(16 * s) ** 2 for s in sizes]),  # a phone photo, or 16x the side
        max_audio_seconds=max([60.0] + [4 * s for s in seconds]),
        max_sample_rate=192_000,
        max_channels=8,
        max_video_frames=int(max([60.0] + clips) * 60),  # the clip at 60 frames per second
        decode_memory_mb=1024.0,
    )


def resolve_limits(processors: Mapping[str, Processor], given: Mapping[str, Any]) -> DecodeLimits:
    """The defaults with every non-None setting of `given` (keys as in DecodeLimits) put in."""
    defaults = default_limits(processors).to_json()
    return DecodeLimits(**{k: (given[k] if given.get(k) is not None else v) for k, v in defaults.items()})


class LimitError(ValueError):
    """A file over a limit: `status` 413 (too large) or 422 (a declared value out of range)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def image_cost(data: bytes, limits: DecodeLimits) -> int:
    """Bytes decoding needs, from the image header; LimitError if over a limit. 0 if Pillow cannot identify it
    (the decoder then reports it)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # Pillow warns above its own (larger) limit; ours is checked below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:  # reads the header only
                (width, height), bands = img.size, len(img.getbands())
    except Image.DecompressionBombError as err:
        raise LimitError(413, f"image too large ({err})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return 0
    return frame_cost(width, height, bands, limits)


def frame_cost(width: int, height: int, bands: int, limits: DecodeLimits, what: str = "image") -> int:
    if width * height > limits.max_image_pixels:
        raise LimitError(413, f"{what} of {width}x{height} = {width * height:,} pixels exceeds the limit of "
                              f"{limits.max_image_pixels:,} (--max-image-pixels); resize it before sending")
    if bands > limits.max_channels:
        raise LimitError(422, f"image with {bands} channels; the limit is {limits.max_channels} (--max-channels)")
    return width * height * _IMAGE_BYTES_PER_PIXEL


def audio_cost(data: bytes, limits: DecodeLimits, target_rate: int) -> int:
    """Bytes decoding needs, from the audio header; LimitError if over a limit. 0 if libsndfile cannot read the
    header (the decoder then reports it)."""
    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError):
        return 0
    check_rate(int(info.samplerate), limits, target_rate)
    if info.channels > limits.max_channels:
        raise LimitError(422, f"audio with {info.channels} channels; the limit is {limits.max_channels} "
                              "(--max-channels)")
    if info.frames >= 2**62:  # libsndfile's "unknown" (a FLAC stream without its sample count)
        raise LimitError(413, "audio that does not declare its length; send a file with a sample count in its header")
    seconds = info.frames / info.samplerate
    if not math.isfinite(seconds) or seconds > limits.max_audio_seconds:
        raise LimitError(413, f"audio of {seconds:,.1f} s exceeds the limit of {limits.max_audio_seconds:g} s "
                              "(--max-audio-seconds); cut it before sending")
    return int(info.frames * info.channels * _AUDIO_BYTES_PER_SAMPLE)


def check_rate(rate: int, limits: DecodeLimits, target: int) -> None:
    """A declared sample rate must be positive, within the limit, and resampled to `target` by a filter of
    bounded size (a prime rate such as 999983 Hz needs one of 20 million taps)."""
    if rate < 1 or rate > limits.max_sample_rate:
        raise LimitError(422, f"audio declares a sample rate of {rate} Hz; accepted: 1 to "
                              f"{limits.max_sample_rate} Hz (--max-sample-rate)")
    g = math.gcd(rate, target)
    if max(rate, target) // g > _MAX_RESAMPLE_FACTOR:
        raise LimitError(422, f"audio at {rate} Hz cannot be resampled to the model's {target} Hz with a filter of "
                              "bounded size; send it at a common rate (8000, 16000, 22050, 44100 or 48000 Hz)")


def video_cost(data: bytes, limits: DecodeLimits, size: int) -> int:
    """Bytes decoding needs, from the container's metadata; LimitError if over a limit."""
    try:
        import av
    except ImportError:
        return 0
    try:
        with av.open(io.BytesIO(data)) as container:
            streams = container.streams.video
            if not streams:
                return 0
            stream = streams[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            frames = stream.frames or _declared_frames(stream, container)
    except (av.FFmpegError, OSError, ValueError):
        return 0
    frame_cost(width, height, 3, limits, "video frame")
    if frames > limits.max_video_frames:
        raise LimitError(413, f"video of {frames:,} frames exceeds the limit of {limits.max_video_frames:,} "
                              "(--max-video-frames)")
    return width * height * _IMAGE_BYTES_PER_PIXEL + frames * size * size * 3


def _declared_frames(stream: Any, container: Any) -> int:
    seconds = float(stream.duration * stream.time_base) if stream.duration else container.duration / 1e6 \
        if container.duration else 0.0
    rate = float(stream.average_rate or stream.guessed_rate or 30)
    return int(seconds * rate)


def file_cost(spec: InputField, proc: Processor, data: bytes, limits: DecodeLimits) -> int:
    """Bytes decoding one file needs; LimitError if its header declares more than the limits allow."""
    if proc.kind == "image":
        return image_cost(data, limits)
    if proc.kind == "audio" and getattr(proc.spec, "source", "file") == "file":
        return audio_cost(data, limits, int(proc.spec.sample_rate))
    if proc.kind in ("video", "audio"):  # a video file, or the audio track of one
        return video_cost(data, limits, int(getattr(proc.spec, "size", 1)))
    return len(data)


def check_files(values: Sequence[Mapping[str, Any]], fields: Mapping[str, InputField],
                processors: Mapping[str, Processor], limits: DecodeLimits) -> int:
    """Total bytes decoding every record's files needs; RequestError (413, else 422) naming every file over a
    limit, or when the total exceeds the decode memory budget."""
    total, problems, status = 0, [], 422
    for i, record in enumerate(values):
        for name, spec in fields.items():
            data = record.get(name)
            if not spec.is_file or not isinstance(data, bytes):
                continue
            try:
                total += file_cost(spec, processors[spec.modality], data, limits)
            except LimitError as err:
                problems.append(Problem(i, name, str(err)))
                status = 413 if err.status == 413 else status
    if problems:
        raise RequestError(status, problems)
    if total > limits.decode_memory_mb * MB:
        raise RequestError(413, message=f"decoding this request's files needs about {total / MB:,.0f} MB; the "
                                        f"limit is {limits.decode_memory_mb:g} MB (--decode-memory-mb): send fewer "
                                        "or smaller files per request")
    return total


class DecodeBudget:
    """Bytes of decoding memory shared by concurrent requests: `run(cost, fn, ...)` waits until `cost` fits, runs
    `fn` in a thread and gives the bytes back when that thread ends (even if the request timed out meanwhile)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def run(self, cost: int, fn: Callable[..., T], *args: Any) -> T:
        cost = min(cost, self.capacity)
        await self._acquire(cost)
        future = asyncio.get_running_loop().run_in_executor(None, fn, *args)
        future.add_done_callback(lambda _: self._release(cost))
        return await asyncio.shield(future)

    async def _acquire(self, cost: int) -> None:
        while self.used + cost > self.capacity:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.used += cost

    def _release(self, cost: int) -> None:
        self.used -= cost
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
