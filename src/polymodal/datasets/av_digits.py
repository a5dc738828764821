"""AV-Digits: audio-visual digits in the spirit of AV-MNIST, built from what ships with the package.

The packaged file `data/av_digits.npz` (made by `scripts/build_av_digits.py`) holds 5,000 clean MNIST digits
(and a Fashion-MNIST subset) plus spoken digits 0-9 from many synthetic voices and a few real human speakers.
`materialize_av_digits` turns it into an ordinary multimodal table: one PNG and one WAV per record and
`records.csv` with columns `id, image, audio, label, split`. Each record pairs an image with a clip of the
same digit; both are degraded (image: pixel noise and an occluding patch; audio: additive noise at a low SNR)
so that neither modality alone is enough. Voices are disjoint across train/val/test, and the real human
speakers never appear in any of them: `human.csv` pairs test images with human speech for a transfer test.
Everything is seeded: the same seed gives the same files.

The imbalanced variant (`av_digits_imbalanced`, degradation `IMBALANCED`) pairs the same digits with clean-ish
speech and more degraded images: with small CNNs, audio alone reaches about 0.80 test accuracy and images
alone about 0.61, and joint training under-trains the image encoder (benchmarks/imbalance.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image

from polymodal.datasets.staging import dataset_root, load_packaged, materialize

VERSION = 1


@dataclass(frozen=True)
class Degradation:
    """How hard each modality is made: image noise std (0..1 scale), occluder side range, audio SNR range (dB)."""

    image_noise: float = 0.3
    occlusion: tuple[int, int] = (8, 14)
    snr_db: tuple[float, float] = (-3.0, 5.0)

    def tag(self) -> str:
        """Empty for the default degradation, else a short stable suffix that keeps cached copies apart."""
        if self == Degradation():
            return ""
        return "_d" + hashlib.sha256(repr(self).encode()).hexdigest()[:8]


# `av_digits_imbalanced`: clean-ish speech (high SNR) with more degraded images, so that audio dominates
# joint training while the images still carry learnable, complementary information.
IMBALANCED = Degradation(image_noise=0.45, occlusion=(10, 14), snr_db=(15.0, 25.0))


def load_source() -> dict[str, np.ndarray]:
    """The packaged arrays, after checking the file against its shipped checksum."""
    return load_packaged("av_digits")


def materialize_av_digits(root: Path | None = None, variant: str = "mnist", seed: int = 0,
                          degradation: Degradation = Degradation()) -> Path:
    """Write AV-Digits as files + `records.csv` (+ `human.csv`) under `root`; return the folder.

    Reuses an existing complete copy. `variant` is "mnist" or "fashion" (Fashion-MNIST images, harder).
    """
    src = load_source()
    key = f"{str(src['checksum'])[:8]}_{variant}_s{seed}{degradation.tag()}"
    return materialize(root or dataset_root("av_digits", VERSION, key),
                       lambda tmp: _write_dataset(tmp, src, variant, seed, degradation))


def _write_dataset(tmp: Path, src: dict[str, np.ndarray], variant: str, seed: int, degradation: Degradation) -> None:
    prefix = {"mnist": "", "fashion": "fashion_"}.get(variant)
    if prefix is None or f"{prefix}images" not in src:
        raise ValueError(f"unknown AV-Digits variant {variant!r}; allowed: mnist, fashion")
    (tmp / "images").mkdir()
    (tmp / "audio").mkdir()
    rng = np.random.default_rng(seed)
    images = src[f"{prefix}images"]
    records, human = _paired(src, prefix, rng)
    for frame in (records, human):
        _write_files(tmp, frame, images, src, degradation, rng)
    internal = ["image_index", "clip"]
    records.drop(columns=internal).to_csv(tmp / "records.csv", index=False)
    human.drop(columns=internal).assign(split="test").to_csv(tmp / "human.csv", index=False)


def _paired(src: dict[str, np.ndarray], prefix: str, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The records (train/val/test) and the human records, each image paired with a clip (`clip` column)."""
    labels = src[f"{prefix}image_labels" if not prefix else f"{prefix}labels"]
    image_split = _stratified_split(labels, rng)
    voice_split = _voice_split(src, rng)
    records = _pair(labels, image_split, voice_split, src, rng, ("train", "val", "test"))
    return records, _pair(labels, image_split, voice_split, src, rng, ("human",))


# A fixed *dev* group of the real speakers (one French, one Italian, one Russian voice), for choosing settings
# on human voices while the other four (en_US and es_MX Allison, the same voice actor; it_IT Menardi; fr Armelle)
# stay held out. Chosen before any measurement.
HUMAN_DEV_SPEAKERS = ("asterisk:fr_CA_f_June", "asterisk:it_IT_m_Carlo", "asterisk:ru_RU_f_IvrvoiceRU")


def human_speakers(variant: str = "mnist", seed: int = 0) -> pd.Series:
    """The speaker of each record of `human.csv` (index: record id), as `materialize_av_digits` pairs them."""
    src = load_source()
    prefix = {"mnist": "", "fashion": "fashion_"}[variant]
    human = _paired(src, prefix, np.random.default_rng(seed))[1]
    return pd.Series(src["speakers"][src["clip_speaker"][human["clip"].to_numpy()]], index=human["id"].to_numpy(),
                     name="speaker")


def _stratified_split(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    split = np.empty(len(labels), dtype=object)
    for y in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == y))
        a, b = int(0.7 * len(idx)), int(0.85 * len(idx))
        split[idx[:a]], split[idx[a:b]], split[idx[b:]] = "train", "val", "test"
    return split


def _voice_split(src: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Per speaker: train/val/test for synthetic voices (disjoint), `human` for real speakers."""
    human = src["speaker_is_human"]
    split = np.where(human, "human", "").astype(object)
    synthetic = rng.permutation(np.flatnonzero(~human))
    a, b = int(0.7 * len(synthetic)), int(0.85 * len(synthetic))
    split[synthetic[:a]], split[synthetic[a:b]], split[synthetic[b:]] = "train", "val", "test"
    return split


def _pair(labels: np.ndarray, image_split: np.ndarray, voice_split: np.ndarray, src: dict[str, np.ndarray],
          rng: np.random.Generator, splits: tuple[str, ...]) -> pd.DataFrame:
    """One record per image of the given splits, with a random clip of the same digit from that split's voices
    (human records reuse the test images)."""
    clip_split = voice_split[src["clip_speaker"]]
    rows = []
    for split in splits:
        image_pool = "test" if split == "human" else split
        for i in np.flatnonzero(image_split == image_pool):
            candidates = np.flatnonzero((clip_split == split) & (src["clip_labels"] == labels[i]))
            rows.append((int(i), int(rng.choice(candidates)), int(labels[i]), split))
    frame = pd.DataFrame(rows, columns=["image_index", "clip", "label", "split"])
    prefix = "h" if splits == ("human",) else "r"
    frame.insert(0, "id", [f"{prefix}{k:05d}" for k in range(len(frame))])
    frame["image"] = [f"images/{r}.png" for r in frame["id"]]
    frame["audio"] = [f"audio/{r}.wav" for r in frame["id"]]
    return frame[["id", "image", "audio", "label", "split", "image_index", "clip"]]


def _write_files(root: Path, frame: pd.DataFrame, images: np.ndarray, src: dict[str, np.ndarray],
                 degradation: Degradation, rng: np.random.Generator) -> None:
    offsets, audio, rate = src["clip_offsets"], src["audio"], int(src["sample_rate"])
    for rec in frame.itertuples():
        Image.fromarray(degrade_image(images[rec.image_index], degradation, rng)).save(root / rec.image)
        wave = audio[offsets[rec.clip]: offsets[rec.clip + 1]].astype(np.float32) / 32768.0
        sf.write(root / rec.audio, degrade_audio(wave, rate, degradation, rng), rate, subtype="PCM_16")


def degrade_image(image: np.ndarray, d: Degradation, rng: np.random.Generator) -> np.ndarray:
    """Gaussian pixel noise plus one noise-filled square occluder at a random place."""
    x = image.astype(np.float32) / 255.0
    side = int(rng.integers(d.occlusion[0], d.occlusion[1] + 1))
    top, left = rng.integers(0, x.shape[0] - side + 1, size=2)
    x[top: top + side, left: left + side] = rng.random((side, side))
    x = x + rng.normal(0.0, d.image_noise, size=x.shape)
    return (np.clip(x, 0.0, 1.0) * 255).round().astype(np.uint8)


def degrade_audio(wave: np.ndarray, rate: int, d: Degradation, rng: np.random.Generator) -> np.ndarray:
    """Place the clip at a random offset in a 1 s window and add white noise at a random SNR."""
    length = max(rate, wave.size)
    start = int(rng.integers(0, length - wave.size + 1))
    out = np.zeros(length, dtype=np.float32)
    out[start: start + wave.size] = wave
    signal_power = float(np.mean(wave**2)) + 1e-10
    snr = rng.uniform(*d.snr_db)
    noise = rng.normal(0.0, np.sqrt(signal_power / 10 ** (snr / 10)), size=length)
    out = out + noise.astype(np.float32)
    return np.clip(out / max(1.0, float(np.abs(out).max())), -1.0, 1.0)
