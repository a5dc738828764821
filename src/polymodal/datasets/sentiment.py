"""Sentiment: spoken sentences with a sentiment score in [-3, 3], where the delivery can flip the words' meaning.

The packaged file `data/sentiment.npz` (made by `scripts/build_sentiment.py`) holds 1,000 short sentences
built around words of the VADER lexicon (whose human valence ratings give the score), each synthesized by one
of 80 eSpeak NG voices (8 English accents x 10 variants) and stored as 8 kHz Ogg Opus. Half of the plainly
positive sentences (144 of the 1,000 records) are spoken sarcastically (slow, high, exaggerated pitch range)
and scored negative: for those, the text alone points the wrong way and the audio is needed; for the others,
the words carry the score. `materialize_sentiment` writes one 8 kHz WAV per record and `records.csv` with columns
`id, text, audio, score, text_score, delivery, flipped, speaker, split`; speakers are disjoint across
train/val/test (seeded). `flipped` marks the sarcastic records (the delivery-flipped subset).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from polymodal.datasets.staging import dataset_root, load_packaged, materialize

VERSION = 1


def load_source() -> dict[str, np.ndarray]:
    """The packaged arrays, after checking the file against its shipped checksum."""
    return load_packaged("sentiment")


def materialize_sentiment(root: Path | None = None, seed: int = 0) -> Path:
    """Write the sentiment dataset (WAV files + `records.csv`) under `root`; return the folder.

    Reuses an existing complete copy.
    """
    src = load_source()
    return materialize(root or dataset_root("sentiment", VERSION, f"{str(src['checksum'])[:8]}_s{seed}"),
                       lambda tmp: _write_dataset(tmp, src, seed))


def _write_dataset(tmp: Path, src: dict[str, np.ndarray], seed: int) -> None:
    (tmp / "audio").mkdir()
    frame = records(src, speaker_split(len(src["speakers"]), np.random.default_rng(seed)))
    rate, opus, offsets = int(src["sample_rate"]), src["opus"], src["offsets"]
    for i, path in enumerate(frame["audio"]):
        wave, _ = sf.read(io.BytesIO(opus[offsets[i]: offsets[i + 1]].tobytes()), dtype="float32")
        sf.write(tmp / path, wave, rate, subtype="PCM_16")
    frame.to_csv(tmp / "records.csv", index=False)


def speaker_split(n_speakers: int, rng: np.random.Generator) -> np.ndarray:
    """train/val/test per speaker (70/15/15), so no voice is heard in two splits."""
    order = rng.permutation(n_speakers)
    split = np.empty(n_speakers, dtype=object)
    a, b = int(0.7 * n_speakers), int(0.85 * n_speakers)
    split[order[:a]], split[order[a:b]], split[order[b:]] = "train", "val", "test"
    return split


def records(src: dict[str, np.ndarray], split: np.ndarray) -> pd.DataFrame:
    ids = [f"s{k:05d}" for k in range(len(src["text"]))]
    return pd.DataFrame({
        "id": ids,
        "text": src["text"].astype(str),
        "audio": [f"audio/{i}.wav" for i in ids],
        "score": src["score"].astype(float).round(2),
        "text_score": src["text_score"].astype(float).round(2),
        "delivery": np.where(src["sarcastic"], "sarcastic", "plain"),
        "flipped": src["sarcastic"].astype(bool),
        "speaker": src["speakers"][src["speaker"]].astype(str),
        "split": split[src["speaker"]],
    })
