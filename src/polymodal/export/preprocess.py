"""Preprocessing of an exported polymodal model, standalone: raw records -> the model's named inputs.

`polymodal export` copies this file next to the model as `preprocess.py`. It needs numpy, and for images Pillow,
for audio soundfile, for text Hugging Face `tokenizers`; never torch or polymodal. It reads the export's
manifest (export.json) and the fitted processor state (processors.json) from its own folder:

    import onnxruntime as ort
    from preprocess import Preprocessor

    pre = Preprocessor()                                  # or Preprocessor("path/to/export")
    feeds = pre.feeds([{"photo": "img/1.png", "title": "red apple", "price": 3.5}], root="data")
    logits, fused = ort.InferenceSession("model.onnx").run(None, feeds)

A record maps field names to values: file paths (relative to `root`) or bytes for images and audio, strings for
text, numbers and categories for tabular columns, lists for vectors and sequences. An absent, None or empty
value marks its modality missing. This is the same computation the project's processors do, in numpy.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray]


def is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str) and not value.strip():
        return True
    return isinstance(value, (list, tuple, np.ndarray, bytes, bytearray)) and len(value) == 0


def source(value: Any, root: Path) -> Any:
    """What to open for a file-valued field: bytes in memory, or a path under `root`."""
    if isinstance(value, (bytes, bytearray)):
        return io.BytesIO(bytes(value))
    path = Path(str(value).strip())
    return str(path if path.is_absolute() else root / path)


# -------------------------------------------------------------------------------------------------------- image


def image(value: Any, root: Path, spec: Mapping[str, Any], state: Mapping[str, Any]) -> Arrays:
    """pixels (C, size, size) float32: grey or RGB, bilinear resize, (x / 255 - mean) / std."""
    from PIL import Image

    with Image.open(source(value, root)) as img:
        raw = np.asarray(img.convert("L" if spec["channels"] == 1 else "RGB"), dtype=np.uint8)
    small = Image.fromarray(np.ascontiguousarray(raw)).resize((spec["size"], spec["size"]), Image.Resampling.BILINEAR)
    pixels = np.asarray(small, dtype=np.uint8)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)  # (C, H, W)
    x = pixels.astype(np.float32) / np.float32(255.0)
    mean, std = (np.asarray(state[k], dtype=np.float32).reshape(-1, 1, 1) for k in ("mean", "std"))
    return {"pixels": (x - mean) / std}


def image_blank(spec: Mapping[str, Any], state: Mapping[str, Any]) -> Arrays:
    zeros = np.zeros((spec["channels"], spec["size"], spec["size"]), dtype=np.float32)
    mean, std = (np.asarray(state[k], dtype=np.float32).reshape(-1, 1, 1) for k in ("mean", "std"))
    return {"pixels": (zeros - mean) / std}


# -------------------------------------------------------------------------------------------------------- audio


def audio(value: Any, root: Path, spec: Mapping[str, Any], state: Mapping[str, Any]) -> Arrays:
    """mel (T, n_mels) float32: mono, resampled, cut to max_seconds, log-mel, standardized per band."""
    import soundfile as sf

    if spec.get("source", "file") != "file" or spec.get("frontend", "log_mel") != "log_mel":
        raise NotImplementedError("preprocess.py handles audio files with the log_mel frontend only")
    wave, rate = sf.read(source(value, root), dtype="float32", always_2d=True)  # (N, channels)
    wave = wave.mean(axis=1)
    if wave.size == 0 or not np.isfinite(wave).all():
        raise ValueError("audio without samples, or with NaN or infinite ones")
    target = int(spec["sample_rate"])
    wave = resample(wave, int(rate), target)[: int(spec["max_seconds"] * target)]
    mel = log_mel(wave, target, int(spec["n_mels"]), float(spec.get("hop_ms", 10.0)))
    mel = utterance_normalized(mel, spec.get("utterance_norm", "none"))
    return {"mel": standardized(mel, state)}


def utterance_normalized(mel: np.ndarray, mode: str) -> np.ndarray:
    """(T, M) minus its own mean per band (`mean`), then divided by its own std floored at 1e-3 (`mean_std`)."""
    if mode == "none":
        return mel
    out = mel - mel.mean(axis=0, keepdims=True)
    if mode == "mean_std":
        out = out / np.maximum(np.sqrt((out**2).mean(axis=0, keepdims=True)), 1e-3)
    return out.astype(np.float32)


def standardized(x: np.ndarray, state: Mapping[str, Any]) -> np.ndarray:
    """(x - mean) / std along the last axis, with the fitted statistics."""
    mean, std = (np.asarray(state[k], dtype=np.float32) for k in ("mean", "std"))
    return ((x - mean) / std).astype(np.float32)


def audio_blank(spec: Mapping[str, Any], state: Mapping[str, Any]) -> Arrays:
    return {"mel": standardized(np.zeros((1, spec["n_mels"]), dtype=np.float32), state)}


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling with a Kaiser-windowed (beta 5) sinc filter of 20 x max(up, down) + 1 taps, zero
    padding at both ends: what scipy.signal.resample_poly does by default, in numpy."""
    if rate == target:
        return wave.astype(np.float32)
    g = math.gcd(rate, target)
    up, down = target // g, rate // g
    half = 10 * max(up, down)
    taps = np.arange(2 * half + 1) - half
    h = np.sinc(taps / max(up, down)) / max(up, down) * np.kaiser(2 * half + 1, 5.0)
    h = h / h.sum() * up
    n_out = -(-len(wave) * up // down)  # ceil
    pre = down - half % down
    start = (half + pre) // down
    h = np.concatenate([np.zeros(pre), h])
    return upfirdn(h, wave.astype(np.float64), up, down, start, n_out).astype(np.float32)


def upfirdn(h: np.ndarray, x: np.ndarray, up: int, down: int, start: int, count: int) -> np.ndarray:
    """Outputs start..start+count of: upsample x by `up` (zeros between), filter with h, keep every `down`-th.

    Output k is sum_i x[i] h[k*down - i*up]: per phase p = k*down mod up, a plain convolution of x with h[p::up].
    """
    k = np.arange(start, start + count)
    pos = k * down  # (K,) position in the upsampled signal
    out = np.zeros(count)
    for p in np.unique(pos % up):
        sub = h[p::up]
        full = np.convolve(x, sub)  # full[j] = sum_t sub[t] x[j - t]
        sel = pos % up == p
        j = (pos[sel] - p) // up
        out[sel] = np.where(j < len(full), full[np.minimum(j, len(full) - 1)], 0.0)
    return out


def log_mel(wave: np.ndarray, rate: int, n_mels: int, hop_ms: float) -> np.ndarray:
    """(T, n_mels) log(mel power + 1e-6) of 25 ms Hann windows (centred in a power-of-2 FFT) every `hop_ms` ms."""
    win, hop = int(0.025 * rate), max(1, int(hop_ms / 1000 * rate))
    n_fft = 1 << (win - 1).bit_length()
    x = np.pad(wave, (0, max(0, n_fft - len(wave)))).astype(np.float32)
    window = np.zeros(n_fft, dtype=np.float32)
    left = (n_fft - win) // 2
    window[left: left + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]  # (T, n_fft)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # (T, n_fft/2+1)
    mel = power @ mel_filterbank(rate, n_fft, n_mels).T.astype(np.float64)  # (T, M)
    return np.log(mel + 1e-6).astype(np.float32)


def mel_filterbank(rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_mels, n_fft/2+1) triangular filters evenly spaced on the HTK mel scale."""
    def to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    edges = to_hz(np.linspace(0.0, 2595.0 * np.log10(1.0 + rate / 2 / 700.0), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / np.maximum(mid - lo, 1e-9)
    down = (hi - freqs[None]) / np.maximum(hi - mid, 1e-9)
    return np.clip(np.minimum(up, down), 0.0, None).astype(np.float32)


# ------------------------------------------------------------------------------------------ text, tabular, arrays


def text(value: Any, root: Path, spec: Mapping[str, Any], state: Mapping[str, Any]) -> Arrays:
    """ids (T,) int64: the run's tokenizer, cut to max_length."""
    ids = _tokenizer(state["tokenizer"]).encode(str(value)).ids[: spec["max_length"]]
    if not ids:
        raise ValueError(f"text {str(value)[:40]!r} has no tokens")
    return {"ids": np.asarray(ids, dtype=np.int64)}


_TOKENIZERS: dict[str, Any] = {}


def _tokenizer(serialized: str) -> Any:
    if serialized not in _TOKENIZERS:
        from tokenizers import Tokenizer

        _TOKENIZERS[serialized] = Tokenizer.from_str(serialized)
    return _TOKENIZERS[serialized]


def text_blank(spec: Mapping[str, Any], state: Mapping[str, Any]) -> Arrays:
    return {"ids": np.zeros(1, dtype=np.int64)}


def tabular(value: Mapping[str, Any], root: Path, spec: Mapping[str, Any], state: Mapping[str, Any]) -> Arrays:
    """numeric (2K,) float32: standardized values (0 if missing) then missing indicators; categorical (C,) int64:
    1 + the position in the sorted known categories, 0 if unknown or missing."""
    x = np.array([math.nan if is_empty(value.get(c)) else float(value[c]) for c in spec["numeric"]], np.float32)
    missing = np.isnan(x)
    mean, std = (np.asarray(state[k], dtype=np.float32) for k in ("mean", "std"))
    z = np.where(missing, np.float32(0), (x - mean) / std).astype(np.float32)
    cats = [_category(state["categories"][c], value.get(c)) for c in spec["categorical"]]
    return {"numeric": np.concatenate([z, missing.astype(np.float32)]), "categorical": np.asarray(cats, np.int64)}


def _category(known: Sequence[str], value: Any) -> int:
    if is_empty(value):
        return 0
    return known.index(str(value)) + 1 if str(value) in known else 0


def tabular_blank(spec: Mapping[str, Any], state: Mapping[str, Any]) -> Arrays:
    return tabular({}, Path("."), spec, state)


def vector(value: Any, root: Path, spec: Mapping[str, Any], state: Mapping[str, Any]) -> Arrays:
    x = np.asarray(json.loads(value) if isinstance(value, str) else value, dtype=np.float32)
    return {"values": standardized(x, state)}


def vector_blank(spec: Mapping[str, Any], state: Mapping[str, Any]) -> Arrays:
    return {"values": standardized(np.zeros(state["dim"], dtype=np.float32), state)}


def sequence(value: Any, root: Path, spec: Mapping[str, Any], state: Mapping[str, Any]) -> Arrays:
    x = np.asarray(json.loads(value) if isinstance(value, str) else value, dtype=np.float32)
    x = (x[:, None] if x.ndim == 1 else x)[: spec["max_length"]]
    return {"values": standardized(x, state)}


def sequence_blank(spec: Mapping[str, Any], state: Mapping[str, Any]) -> Arrays:
    return {"values": standardized(np.zeros((1, state["dim"]), dtype=np.float32), state)}


def readers(name: str) -> tuple[Any, Any]:
    """The functions `name` and `name_blank` of this file (the manifest names them per modality)."""
    found = globals().get(name), globals().get(f"{name}_blank")
    if not all(callable(f) and getattr(f, "__module__", None) == __name__ for f in found):
        raise NotImplementedError(f"preprocess.py has no reader {name!r}")
    return found


# --------------------------------------------------------------------------------------------------- batches


class Preprocessor:
    """Named inputs of the exported model for a list of raw records (see the module docstring)."""

    def __init__(self, export_dir: str | Path | None = None) -> None:
        self.path = Path(export_dir) if export_dir is not None else Path(__file__).resolve().parent
        self.manifest = json.loads((self.path / "export.json").read_text())
        self.state = json.loads((self.path / self.manifest["preprocessing"]["state"]).read_text())["modalities"]

    def feeds(self, records: Sequence[Mapping[str, Any]], root: str | Path = ".") -> dict[str, np.ndarray]:
        """The exported model's inputs (name -> array) for `records`, in order."""
        per_modality = {m: self._modality(m, records, Path(root)) for m in self.manifest["modalities"]}
        feeds: dict[str, np.ndarray] = {}
        for spec in self.manifest["inputs"]:
            m, key = spec["modality"], spec["key"]
            value = per_modality[m][key]
            feeds[spec["name"]] = _pad(value, min((spec.get("min_size") or {}).values(), default=1))
        return feeds

    def _modality(self, m: str, records: Sequence[Mapping[str, Any]], root: Path) -> Arrays:
        entry = self.manifest["modalities"][m]
        plan, spec, state = entry["preprocess"], entry["spec"], self.state[m]
        if "unsupported" in plan:
            raise NotImplementedError(f"preprocess.py does not handle {entry['type']} inputs ({m!r}): "
                                      f"{plan['unsupported']}")
        read, blank = readers(plan["reader"])
        columns = plan["columns"]
        items, present = [], []
        for i, record in enumerate(records):
            value = {c: record.get(c) for c in entry["fields"]} if columns else record.get(entry["fields"][0])
            missing = all(map(is_empty, value.values())) if columns else is_empty(value)
            try:
                items.append(blank(spec, state) if missing else read(value, root, spec, state))
            except Exception as err:
                raise ValueError(f"record {i}, modality {m!r}: {err}") from err
            present.append(not missing)
        out = _stack(items, plan["time_axis"])
        out["present"] = np.asarray(present, dtype=bool)
        return out


def _stack(items: list[Arrays], ragged: str | None) -> Arrays:
    """Stack items into a batch; the ragged key is zero-padded along time, with a mask (True = real step)."""
    if ragged is None:
        return {k: np.stack([it[k] for it in items]) for k in items[0]}
    lengths = [len(it[ragged]) for it in items]
    first = items[0][ragged]
    out = np.zeros((len(items), max(lengths), *first.shape[1:]), dtype=first.dtype)
    mask = np.zeros((len(items), max(lengths)), dtype=bool)
    for i, (it, n) in enumerate(zip(items, lengths)):
        out[i, :n], mask[i, :n] = it[ragged], True
    return {ragged: out, "mask": mask}


def _pad(x: np.ndarray, length: int) -> np.ndarray:
    """Pad axis 1 of (B, T, ...) with zeros (False for masks) up to `length` steps."""
    if x.ndim < 2 or x.shape[1] >= length:
        return x
    return np.pad(x, [(0, 0), (0, length - x.shape[1])] + [(0, 0)] * (x.ndim - 2))
