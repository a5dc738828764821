#!/usr/bin/env python3
"""Build ``sentiment.npz``, the source file of polymodal's built-in ``sentiment`` dataset.

Spoken sentences whose words carry human valence ratings, synthesized with many voices and varied prosody,
some of them spoken sarcastically so that the delivery flips what the words say.

How a record is made (everything drawn from one seeded generator, so the same seed gives the same file)
--------------------------------------------------------------------------------------------------------
* Words: from the VADER lexicon (shipped in the ``vadersentiment`` package, ``vader_lexicon.txt``: the mean
  of 10 human ratings in [-4, 4] and their standard deviation). Kept: lowercase alphabetic words of 4+ letters
  with an adjective-like ending, rated consistently (std <= 1.0); 40 positive (mean >= 1.5), 40 negative
  (mean <= -1.5) and 30 mild (|mean| <= 1.2) words are drawn.
* Sentence: ``<subject> <verb> [<intensifier>] [not] <word>``, e.g. "the hotel was really wonderful".
* Score (the label, in [-3, 3]): the word's mean rating x 0.75, times the intensifier's factor (very/really
  1.3, quite 1.1, slightly 0.6), times -0.5 when negated, clipped and rounded to 0.1.
* Delivery: a sentence whose text score is >= 1.0 and not negated is spoken sarcastically with probability
  0.5 (slow, high-pitched, wide pitch range, the valence word drawn out); its label becomes -0.6 x the text
  score (positive words, negative meaning). Other sentences are spoken normally (each voice has its own rate
  and pitch, varied per sentence). So text alone cannot tell a sarcastic record, and audio alone hears the
  delivery but not reliably the words: the label needs both.
* Voices: eSpeak NG (Debian package ``espeak-ng``), 8 English accents x 10 voice variants = 80 speakers.

Audio is stored compactly: resampled to 8 kHz, silence trimmed, peak-normalized, encoded as Ogg Opus at the
lowest bitrate (libsndfile via soundfile, ``compression_level=1.0``: about 10 kbit/s, which keeps the pitch
contour and rhythm that carry the delivery). Ogg streams get a random serial number from libsndfile; it is
set to 0 (and each page's checksum recomputed) so that the file is byte-for-byte reproducible.

Keys of the npz: ``text`` (str, N), ``score`` (float32, N), ``text_score`` (float32, N: the score the words
alone give), ``sarcastic`` (bool, N), ``speaker`` (int64, N, index into ``speakers``), ``speakers`` (str),
``opus`` (uint8, all clips' Ogg Opus bytes concatenated), ``offsets`` (int64, N + 1: clip i is
``opus[offsets[i]:offsets[i + 1]]``), ``sample_rate`` (int64 scalar, 8000). A ``sentiment.sha256`` is
written next to it.

Usage: ``python scripts/build_sentiment.py [--records 1000] [--seed 0] [--out src/polymodal/datasets/data]``
(needs ``espeak-ng`` on PATH: ``apt-get install espeak-ng``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

RATE = 8000
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m7", "f1", "f2", "f3", "f4", "f5")
SUBJECTS = ("the movie", "the food", "this phone", "the hotel", "the service", "her speech", "the book",
            "that game", "the concert", "my day")
VERBS = ("was", "is", "seemed", "felt")
INTENSIFIERS = {"": 1.0, "very": 1.3, "really": 1.3, "quite": 1.1, "slightly": 0.6}
ENDINGS = ("ful", "ous", "ive", "able", "ible", "ing", "ed", "y", "ic", "al", "less", "ent", "ant", "ish", "id")


def load_lexicon() -> dict[str, tuple[float, float]]:
    import vaderSentiment

    path = Path(vaderSentiment.__file__).parent / "vader_lexicon.txt"
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            out[parts[0]] = (float(parts[1]), float(parts[2]))
    return out


def pick_words(lexicon: dict[str, tuple[float, float]], rng: np.random.Generator) -> list[tuple[str, float]]:
    ok = sorted(w for w, (m, s) in lexicon.items()
                if w.isalpha() and w.islower() and len(w) >= 4 and s <= 1.0 and w.endswith(ENDINGS))
    groups = [([w for w in ok if lexicon[w][0] >= 1.5], 40), ([w for w in ok if lexicon[w][0] <= -1.5], 40),
              ([w for w in ok if abs(lexicon[w][0]) <= 1.2], 30)]
    return [(w, lexicon[w][0]) for pool, k in groups for w in sorted(rng.choice(pool, size=k, replace=False))]


def make_sentence(words: list[tuple[str, float]], rng: np.random.Generator) -> dict[str, object]:
    word, rating = words[int(rng.integers(len(words)))]
    intensifier = list(INTENSIFIERS)[int(rng.integers(len(INTENSIFIERS)))]
    negated = bool(rng.random() < 0.2)
    score = rating * 0.75 * INTENSIFIERS[intensifier] * (-0.5 if negated else 1.0)
    score = float(np.round(np.clip(score, -3, 3), 1))
    parts = [SUBJECTS[int(rng.integers(len(SUBJECTS)))], VERBS[int(rng.integers(len(VERBS)))], intensifier,
             "not" if negated else "", word]
    sarcastic = bool(score >= 1.0 and not negated and rng.random() < 0.5)
    label = float(np.round(-0.6 * score, 1)) if sarcastic else score
    return {"text": " ".join(p for p in parts if p), "word": word, "text_score": score, "score": label,
            "sarcastic": sarcastic}


def ssml(record: dict[str, object], rng: np.random.Generator) -> str:
    """The sentence with the delivery's prosody: sarcastic = slow, high, wide range, the valence word drawn out."""
    text, word = str(record["text"]), str(record["word"])
    head = text[: text.rfind(word)]
    if record["sarcastic"]:
        return (f'<speak><prosody rate="{int(rng.integers(55, 70))}%" pitch="+{int(rng.integers(25, 45))}%" '
                f'range="x-high">{head}<prosody rate="x-slow">{word}</prosody></prosody></speak>')
    return (f'<speak><prosody rate="{int(rng.integers(100, 135))}%" pitch="{int(rng.integers(-15, 15)):+d}%">'
            f"{text}</prosody></speak>")


def synthesize(markup: str, voice: str, speed: int, pitch: int, workdir: Path) -> np.ndarray:
    """Mono float audio at 8 kHz, silence trimmed, peak-normalized to 0.7."""
    wav = workdir / "clip.wav"
    subprocess.run(["espeak-ng", "-m", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), markup],
                   check=True, capture_output=True)
    audio, rate = sf.read(str(wav), dtype="float64")
    audio = resample_poly(audio, RATE, rate)
    return trim(audio) * 0.7 / max(1e-6, float(np.abs(audio).max()))


def trim(audio: np.ndarray, frame: int = RATE // 100) -> np.ndarray:
    energy = np.array([np.mean(audio[i: i + frame] ** 2) for i in range(0, len(audio), frame)]) + 1e-12
    voiced = np.flatnonzero(10 * np.log10(energy / energy.max()) > -35)
    return audio[max(0, (voiced[0] - 1) * frame): (voiced[-1] + 2) * frame]


def encode_opus(audio: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio.astype(np.float32), RATE, format="OGG", subtype="OPUS", compression_level=1.0)
    return fixed_serial(buf.getvalue())


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else (c << 1)
        table.append(c & 0xFFFFFFFF)
    return table


CRC = _crc_table()


def ogg_crc(page: bytes) -> int:
    c = 0
    for b in page:
        c = ((c << 8) & 0xFFFFFFFF) ^ CRC[((c >> 24) & 0xFF) ^ b]
    return c


def fixed_serial(data: bytes) -> bytes:
    """The Ogg stream with serial number 0 on every page and the page checksums recomputed."""
    out, pos = bytearray(), 0
    while pos < len(data):
        if data[pos: pos + 4] != b"OggS":
            raise ValueError(f"not an Ogg page at byte {pos}")
        nseg = data[pos + 26]
        length = 27 + nseg + sum(data[pos + 27: pos + 27 + nseg])
        page = bytearray(data[pos: pos + length])
        page[14:18] = b"\0\0\0\0"
        page[22:26] = b"\0\0\0\0"
        page[22:26] = ogg_crc(bytes(page)).to_bytes(4, "little")
        out += page
        pos += length
    return bytes(out)


def build(records: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    words = pick_words(load_lexicon(), rng)
    speakers = [(a, v, int(rng.integers(140, 190)), int(rng.integers(30, 65))) for a in ACCENTS for v in VARIANTS]
    rows, clips = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(records):
            record = make_sentence(words, rng)
            speaker = int(rng.integers(len(speakers)))
            accent, variant, speed, pitch = speakers[speaker]
            audio = synthesize(ssml(record, rng), f"{accent}+{variant}", speed, pitch, Path(tmp))
            clips.append(encode_opus(audio))
            rows.append(record | {"speaker": speaker})
            if (i + 1) % 100 == 0:
                print(f"{i + 1}/{records} clips", flush=True)
    offsets = np.cumsum([0] + [len(c) for c in clips]).astype(np.int64)
    return {
        "text": np.asarray([r["text"] for r in rows], dtype=str),
        "score": np.asarray([r["score"] for r in rows], dtype=np.float32),
        "text_score": np.asarray([r["text_score"] for r in rows], dtype=np.float32),
        "sarcastic": np.asarray([r["sarcastic"] for r in rows], dtype=bool),
        "speaker": np.asarray([r["speaker"] for r in rows], dtype=np.int64),
        "speakers": np.asarray([f"espeak-ng:{a}+{v}:s{s}:p{p}" for a, v, s, p in speakers], dtype=str),
        "opus": np.frombuffer(b"".join(clips), dtype=np.uint8),
        "offsets": offsets,
        "sample_rate": np.asarray(RATE, dtype=np.int64),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "src" / "polymodal"
                        / "datasets" / "data")
    args = parser.parse_args()
    arrays = build(args.records, args.seed)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # Opus bytes do not compress further; plain savez keeps the file reproducible
    raw = buf.getvalue()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sentiment.npz").write_bytes(raw)
    digest = hashlib.sha256(raw).hexdigest()
    (args.out / "sentiment.sha256").write_text(f"{digest}  sentiment.npz\n")
    print(f"wrote {args.out / 'sentiment.npz'}: {len(raw) / 1e6:.2f} MB, {args.records} records, "
          f"{int(arrays['sarcastic'].sum())} sarcastic, sha256 {digest[:12]}")


if __name__ == "__main__":
    main()
