"""Corruptions of raw signals, per modality type, at severity 0 (identity) to 5 (strongest).

A corruption acts on what `Processor.decode_raw` returns (pixels before resizing, the resampled waveform, the
string, the dict of tabular values, the float array), so the processor's own `features` step then prepares the
corrupted signal exactly as it prepares a clean one. Call one as `CORRUPTIONS[kind][name](raw, severity, rng,
stats)`, or `corrupt(processor, name, raw, severity, rng)`, which passes the processor's fitted statistics.

This module holds the kernels; which corruptions a modality type has, and each one's parameter at severities 1..5
(severity 0 always returns the input unchanged), are part of that type's definition in `polymodal.modalities`:

| kind     | name            | parameter                                      |
|----------|-----------------|------------------------------------------------|
| image    | gaussian_noise  | noise std, fraction of the 0..255 range        |
| image    | blur            | Gaussian sigma, fraction of the shorter side   |
| image    | occlusion       | area of one square of the image's mean colour  |
| image    | contrast        | factor towards the per-channel mean            |
| audio    | noise           | signal-to-noise ratio of white noise, dB       |
| audio    | clipping        | clip level, fraction of the peak amplitude     |
| audio    | time_mask       | fraction of the duration silenced (one span)   |
| text     | word_dropout    | P(drop) per word (one word always kept)        |
| text     | typos           | P(typo) per character                          |
| text     | word_swap       | P(swap with the next word) per word            |
| tabular  | gaussian_noise  | noise std on numeric columns, fitted-std units |
| tabular  | feature_dropout | P(set to missing) per column                   |
| vector   | gaussian_noise  | noise std, in fitted-std units                 |
| vector   | feature_dropout | P(set to its mean) per feature                 |
| sequence | time_mask       | fraction of steps set to the mean (one span)   |
| sequence | gaussian_noise  | noise std, in fitted-std units                 |

Without fitted statistics, tabular noise is relative (std = level x |value|), vector/sequence noise uses the
record's own std, and dropped or masked features become 0 instead of the mean.

Randomness (STYLE convention 11): every record gets its own generator, `record_rng(seed, record)`, and every
modality of that record starts from the same state, so the same record gets the same draws for every modality
(a time mask covers the same stretch of a clip and of its feature sequence) and reruns are identical. Each
function draws all its random numbers up front, independently of the severity, so a higher severity corrupts a
superset of what a lower one does (same noise sample scaled up, same mask grown, same words dropped and more).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy.ndimage import gaussian_filter

from polymodal.modalities import modality, modality_types, resolve
from polymodal.processors.audio import Waveform
from polymodal.processors.base import Processor, is_empty

SEVERITIES = range(6)


class FeatureStats(NamedTuple):
    """Fitted per-feature statistics a corruption may scale by (tabular: numeric columns, by name)."""

    mean: np.ndarray
    std: np.ndarray
    columns: tuple[str, ...] = ()

    @classmethod
    def of(cls, processor: Processor) -> FeatureStats | None:
        mean, std = getattr(processor, "mean", None), getattr(processor, "std", None)
        if not mean or not std:
            return None
        return cls(np.asarray(mean, np.float64), np.asarray(std, np.float64),
                   tuple(getattr(processor.spec, "numeric", ())))


CorruptionFn = Callable[[Any, float, np.random.Generator, "FeatureStats | None"], Any]


@dataclass(frozen=True)
class Corruption:
    """One corruption: `levels[s - 1]` is its parameter at severity s (see the module's table)."""

    kind: str
    name: str
    fn: CorruptionFn
    levels: tuple[float, ...]

    def __call__(self, raw: Any, severity: int, rng: np.random.Generator, stats: FeatureStats | None = None) -> Any:
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be an integer 0..5, got {severity!r}")
        return raw if severity == 0 else self.fn(raw, self.levels[severity - 1], rng, stats)


def record_rng(seed: int, record: int) -> np.random.Generator:
    """The generator of one record: a pure function of (seed, record), the same for each of its modalities."""
    return np.random.default_rng([seed % 2**63, record % 2**63])


def corrupt(processor: Processor, name: str, raw: Any, severity: int, rng: np.random.Generator) -> Any:
    """Apply corruption `name` of the processor's modality type, scaled by its fitted statistics."""
    table = CORRUPTIONS.get(processor.kind, {})
    if name not in table:
        raise KeyError(f"no corruption {name!r} for {processor.kind} modalities; "
                       f"available: {', '.join(table) or 'none'}")
    return table[name](raw, severity, rng, FeatureStats.of(processor))


def span(n: int, fraction: float, u: float) -> slice:
    """A stretch of ceil(fraction * n) of n steps starting at u * (n - length): grows around u as fraction grows."""
    length = min(n, math.ceil(fraction * n - 1e-9))
    start = int(u * (n - length))
    return slice(start, start + length)


# ---- image: (H, W) or (H, W, 3) uint8 -------------------------------------------------------------------------

def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def image_noise(raw: np.ndarray, std: float, rng: np.random.Generator, stats: FeatureStats | None) -> np.ndarray:
    z = rng.standard_normal(raw.shape)
    return _to_uint8(raw + std * 255.0 * z)


def image_blur(raw: np.ndarray, sigma: float, rng: np.random.Generator, stats: FeatureStats | None) -> np.ndarray:
    s = sigma * min(raw.shape[:2])
    sigmas = (s, s) if raw.ndim == 2 else (s, s, 0.0)  # separable Gaussian over rows and columns only
    return _to_uint8(gaussian_filter(raw.astype(np.float64), sigmas, mode="reflect"))


def image_occlusion(raw: np.ndarray, area: float, rng: np.random.Generator, stats: FeatureStats | None) -> np.ndarray:
    uy, ux = rng.random(2)
    h, w = raw.shape[:2]
    side = math.sqrt(area * h * w)
    rows, cols = span(h, min(1.0, side / h), uy), span(w, min(1.0, side / w), ux)
    out = raw.copy()
    out[rows, cols] = _to_uint8(raw.mean(axis=(0, 1)))
    return out


def image_contrast(raw: np.ndarray, factor: float, rng: np.random.Generator, stats: FeatureStats | None) -> np.ndarray:
    mean = raw.mean(axis=(0, 1), keepdims=True)
    return _to_uint8(mean + factor * (raw - mean))


# ---- audio: Waveform(samples (N,), rate) ------------------------------------------------------------------------

def audio_noise(raw: Waveform, snr_db: float, rng: np.random.Generator, stats: FeatureStats | None) -> Waveform:
    x = raw.samples.astype(np.float64)
    z = rng.standard_normal(x.shape)
    z /= max(float(np.sqrt(np.mean(z**2))), 1e-12)  # unit power, so the SNR is exact for this sample
    power = float(np.mean(x**2))
    return Waveform((x + z * math.sqrt(power / 10 ** (snr_db / 10))).astype(np.float32), raw.rate)


def audio_clipping(raw: Waveform, level: float, rng: np.random.Generator, stats: FeatureStats | None) -> Waveform:
    limit = level * float(np.abs(raw.samples).max())
    return Waveform(np.clip(raw.samples, -limit, limit).astype(np.float32), raw.rate)


def audio_time_mask(raw: Waveform, fraction: float, rng: np.random.Generator,
                    stats: FeatureStats | None) -> Waveform:
    out = raw.samples.astype(np.float32, copy=True)
    out[span(out.shape[0], fraction, rng.random())] = 0.0
    return Waveform(out, raw.rate)


# ---- text: str -----------------------------------------------------------------------------------------------

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def text_word_dropout(raw: str, p: float, rng: np.random.Generator, stats: FeatureStats | None) -> str:
    words = raw.split()
    u = rng.random(len(words))
    kept = [w for w, ui in zip(words, u) if ui >= p]
    return " ".join(kept) if kept else (words[int(u.argmax())] if words else raw)


def text_typos(raw: str, p: float, rng: np.random.Generator, stats: FeatureStats | None) -> str:
    """Each non-space character, with probability p: substituted, deleted, followed by an inserted letter, or
    swapped with the next character."""
    n = len(raw)
    u, ops, letters = rng.random(n), rng.integers(0, 4, n), rng.integers(0, len(_LETTERS), n)
    out: list[str] = []
    i = 0
    while i < n:
        c = raw[i]
        op = int(ops[i]) if u[i] < p and not c.isspace() else -1
        if op == 0:
            out.append(_LETTERS[letters[i]])
        elif op == 2:
            out.extend((c, _LETTERS[letters[i]]))
        elif op == 3 and i + 1 < n:
            out.extend((raw[i + 1], c))
            i += 1
        elif op != 1:
            out.append(c)
        i += 1
    typed = "".join(out)
    return typed if typed.strip() else raw


def text_word_swap(raw: str, p: float, rng: np.random.Generator, stats: FeatureStats | None) -> str:
    """Left to right, each word not yet moved is swapped with the next with probability p (disjoint pairs)."""
    words = raw.split()
    u = rng.random(len(words))
    i = 0
    while i < len(words) - 1:
        if u[i] < p:
            words[i], words[i + 1] = words[i + 1], words[i]
            i += 1
        i += 1
    return " ".join(words)


# ---- tabular: dict column -> value ---------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and not is_empty(value) and math.isfinite(float(value))


def tabular_noise(raw: dict[str, Any], std: float, rng: np.random.Generator,
                  stats: FeatureStats | None) -> dict[str, Any]:
    z = rng.standard_normal(len(raw))
    scale = dict(zip(stats.columns, stats.std)) if stats is not None else {}
    out = dict(raw)
    for (col, value), zi in zip(raw.items(), z):
        if (not scale or col in scale) and _is_number(value):
            unit = scale[col] if scale else abs(float(value))
            out[col] = float(value) + std * unit * float(zi)
    return out


def tabular_dropout(raw: dict[str, Any], p: float, rng: np.random.Generator,
                    stats: FeatureStats | None) -> dict[str, Any]:
    u = rng.random(len(raw))
    return {col: (None if ui < p else value) for (col, value), ui in zip(raw.items(), u)}


# ---- vector (F,) and sequence (T, F): float arrays -----------------------------------------------------------

def _feature_std(x: np.ndarray, stats: FeatureStats | None) -> np.ndarray:
    if stats is not None and stats.std.shape[0] == x.shape[-1]:
        return stats.std
    own = float(x.std())
    return np.full(x.shape[-1], own if own > 0 else 1.0)


def _feature_mean(x: np.ndarray, stats: FeatureStats | None) -> np.ndarray:
    if stats is not None and stats.mean.shape[0] == x.shape[-1]:
        return stats.mean
    return np.zeros(x.shape[-1])


def array_noise(raw: np.ndarray, std: float, rng: np.random.Generator, stats: FeatureStats | None) -> np.ndarray:
    z = rng.standard_normal(raw.shape)
    return (raw + std * _feature_std(raw, stats) * z).astype(np.float32)  # stats broadcast over the last axis


def vector_dropout(raw: np.ndarray, p: float, rng: np.random.Generator, stats: FeatureStats | None) -> np.ndarray:
    drop = rng.random(raw.shape) < p
    return np.where(drop, _feature_mean(raw, stats), raw).astype(np.float32)


def sequence_time_mask(raw: np.ndarray, fraction: float, rng: np.random.Generator,
                       stats: FeatureStats | None) -> np.ndarray:
    out = raw.astype(np.float32, copy=True)
    out[span(out.shape[0], fraction, rng.random())] = _feature_mean(raw, stats)
    return out


def corruption_table() -> dict[str, dict[str, Corruption]]:
    """Every modality type's corruptions, by type and name, as its `polymodal.modalities` entry declares them."""
    table = {}
    for kind in modality_types():
        parts = modality(kind).corruption_parts()
        if parts:
            table[kind] = {p.name: Corruption(kind, p.name, resolve(p.fn), p.levels) for p in parts}
    return table


CORRUPTIONS: dict[str, dict[str, Corruption]] = corruption_table()  # built once the kernels above are defined
