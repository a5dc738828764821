"""Audio: read with soundfile, mix to mono, resample, log-mel spectrogram computed in torch, normalize."""

from __future__ import annotations

from functools import lru_cache
from math import gcd
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from polymodal.config import AudioSpec
from polymodal.errors import RecordError
from polymodal.processors.audio_augment import (
    freq_warp,
    spec_augment,
    speed_perturb,
    utterance_normalize,
    utterance_normalize_item,
)
from polymodal.processors.base import Arrays, Processor, file_source, mean_std


class Waveform(NamedTuple):
    """A raw mono signal: (N,) float32 samples at `rate` Hz."""

    samples: np.ndarray
    rate: int


class AudioProcessor(Processor):
    kind = "audio"
    ragged = True
    spec: AudioSpec

    def __init__(self, spec: AudioSpec, field: str) -> None:
        super().__init__(spec, field)
        self.mean = [0.0] * spec.n_mels
        self.std = [1.0] * spec.n_mels

    def decode_raw(self, value: Any, root: Path) -> Waveform:
        """The mono waveform resampled to `sample_rate` and cut to `max_seconds`."""
        source, name = file_source(value, root, self.allow_outside_root)
        if self.spec.source == "video":
            from polymodal.processors.video import read_audio_track

            wave, rate = read_audio_track(source, name, self.spec.max_seconds)  # (N, 1)
        else:
            try:
                wave, rate = sf.read(source if not isinstance(source, Path) else str(source), dtype="float32",
                                     always_2d=True)  # (N, channels)
            except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as err:
                reason = getattr(err, "error_string", err)  # libsndfile's reason, without the file object's repr
                raise RecordError(f"cannot decode audio {name} ({reason})") from None
        wave = wave.mean(axis=1)
        if wave.size == 0:
            raise RecordError(f"audio {name} has no samples")
        if not np.isfinite(wave).all():
            raise RecordError(f"audio {name} contains NaN or infinite samples")
        wave = resample(wave, rate, self.spec.sample_rate)[: int(self.spec.max_seconds * self.spec.sample_rate)]
        return Waveform(wave, self.spec.sample_rate)

    def features(self, raw: Waveform) -> Arrays:
        wave = resample(np.asarray(raw.samples, dtype=np.float32), raw.rate, self.spec.sample_rate)
        if self.spec.frontend == "aisfx":  # the aiSFX model's own spectrogram, normalised as it was trained
            from polymodal.encoders.pretrained.aisfx import aisfx_mel

            return {"mel": aisfx_mel(wave)}
        return {"mel": log_mel(wave, self.spec.sample_rate, self.spec.n_mels, self.spec.hop_ms)}

    def blank(self) -> Arrays:
        return {"mel": np.zeros((1, self.spec.n_mels), dtype=np.float32)}

    def fit_items(self, items: list[Arrays]) -> None:
        if self.spec.frontend == "aisfx":  # already normalised: keep mean 0, std 1
            return
        norm = self.spec.utterance_norm
        self.mean, self.std = mean_std(np.concatenate([utterance_normalize_item(it["mel"], norm) for it in items]),
                                       axis=(0,))

    def encoder_inputs(self) -> dict[str, Any]:
        return {"n_mels": self.spec.n_mels}

    def to_model(self, inputs: dict[str, Tensor], train: bool) -> dict[str, Tensor]:
        mel, mask = inputs["mel"], inputs["mask"]  # (B, T, M), (B, T)
        log_mel_frontend = self.spec.frontend == "log_mel"
        if train and log_mel_frontend:
            mel, mask = speed_perturb(mel, mask, self.spec.speed_perturb)
            mel = freq_warp(mel, self.spec.freq_warp)
        if log_mel_frontend:
            mel = utterance_normalize(mel, mask, self.spec.utterance_norm)
        mel = (mel - self.stats("mean", mel)) / self.stats("std", mel) * mask[..., None]  # padding stays 0
        if train and self.spec.spec_augment:
            mel = spec_augment(mel, mask)
        return {"mel": mel, "mask": mask}

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = state["mean"], state["std"]


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (anti-aliased) from `rate` to `target` Hz."""
    if rate == target:
        return wave.astype(np.float32)
    g = gcd(rate, target)
    from scipy.signal import resample_poly  # on use: scipy.signal takes about as long to import as torch

    return resample_poly(wave, target // g, rate // g).astype(np.float32)


def log_mel(wave: np.ndarray, rate: int, n_mels: int, hop_ms: float = 10.0) -> np.ndarray:
    """(T, n_mels) log-mel energies: 25 ms Hann windows (zero-padded to a power of 2) every `hop_ms` ms."""
    win, hop = int(0.025 * rate), max(1, int(hop_ms / 1000 * rate))
    n_fft = 1 << (win - 1).bit_length()
    x = torch.from_numpy(wave)
    if x.numel() < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.numel()))
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=win, window=torch.hann_window(win),
                      center=False, return_complex=True).abs() ** 2  # (n_fft/2+1, T)
    mel = torch.from_numpy(mel_filterbank(rate, n_fft, n_mels)) @ spec  # (M, T)
    return torch.log(mel + 1e-6).T.contiguous().numpy().astype(np.float32)


@lru_cache(maxsize=8)
def mel_filterbank(rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_mels, n_fft/2+1) triangular filters evenly spaced on the HTK mel scale."""
    def to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    edges = to_hz(np.linspace(0.0, to_mel(np.array(rate / 2)), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / np.maximum(mid - lo, 1e-9)
    down = (hi - freqs[None]) / np.maximum(hi - mid, 1e-9)
    return np.clip(np.minimum(up, down), 0.0, None).astype(np.float32)
