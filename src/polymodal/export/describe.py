"""Plain-language manifest entries: how each input is made from a raw value, and what each output means."""

from __future__ import annotations

from typing import Any

from polymodal.export.graph import TensorSpec, input_name
from polymodal.rundir import STATE, Run

_STATE_NOTE = f"mean/std: {STATE} modalities.{{m}}"


def _image(spec: Any, m: str) -> str:
    mode = "L (grey)" if spec.channels == 1 else "RGB"
    return (f"pixels (B, {spec.channels}, {spec.size}, {spec.size}) float32: decode the file, convert to {mode}, "
            f"resize to {spec.size}x{spec.size} (bilinear), channels first, then (uint8 / 255 - mean[c]) / std[c] "
            f"({_STATE_NOTE.format(m=m)})")


def _text(spec: Any, m: str) -> str:
    return (f"ids (B, T) int64: token ids of the Hugging Face `tokenizers` JSON at {STATE} modalities.{m}.tokenizer, "
            f"cut to {spec.max_length} tokens, padded with 0; mask (B, T) bool: True for real tokens")


def _audio(spec: Any, m: str) -> str:
    return (f"mel (B, T, {spec.n_mels}) float32: mono, resampled to {spec.sample_rate} Hz as "
            f"scipy.signal.resample_poly does (Kaiser window, beta 5), cut to {spec.max_seconds} s; "
            "log(mel power + 1e-6) of 25 ms periodic Hann windows centred in a power-of-2 FFT frame every 10 ms, "
            f"no edge padding (HTK mel filterbank, {spec.n_mels} bands), "
            f"then (x - mean) / std per band ({_STATE_NOTE.format(m=m)}), padding steps 0; "
            "mask (B, T) bool: True for real steps")


def _tabular(spec: Any, m: str) -> str:
    k = len(spec.numeric)
    return (f"numeric (B, {2 * k}) float32: for the columns {list(spec.numeric)}, (value - mean) / std (0 where "
            f"missing), followed by one 1/0 missing indicator per column ({_STATE_NOTE.format(m=m)}); "
            f"categorical (B, {len(spec.categorical)}) int64: for the columns {list(spec.categorical)}, 1 + the "
            f"value's position in the sorted list {STATE} modalities.{m}.categories[column], 0 if unknown or missing")


def _vector(spec: Any, m: str) -> str:
    return f"values (B, F) float32: (value - mean) / std per feature ({_STATE_NOTE.format(m=m)})"


def _sequence(spec: Any, m: str) -> str:
    return (f"values (B, T, F) float32: at most {spec.max_length} steps, (value - mean) / std per feature "
            f"({_STATE_NOTE.format(m=m)}), padding steps 0; mask (B, T) bool: True for real steps")


_PREPROCESSING = {"image": _image, "text": _text, "audio": _audio, "tabular": _tabular, "vector": _vector,
                  "sequence": _sequence}


def modality_entry(run: Run, m: str) -> dict[str, Any]:
    spec = run.config.modalities[m]
    proc = run.processors[m]
    describe = _PREPROCESSING.get(spec.type)
    return {
        "type": spec.type,
        "fields": list(getattr(proc, "columns", [proc.field])),
        "encoder": type(run.model.encoders[m]).__name__,
        "presence_input": input_name(m, "present"),
        "preprocessing": describe(spec, m) if describe else f"see the {spec.type} processor",
        "spec": {k: v for k, v in spec.model_dump(mode="json").items() if k != "encoder"},  # what preprocess.py reads
        "missing": (f"set {input_name(m, 'present')} to false for that record; its other inputs are then ignored "
                    "but must be finite and of the right shape: zeros, and for sequences at least one step whose "
                    "mask is true (what the processor gives a missing value)"),
    }


def output_entry(spec: TensorSpec, run: Run) -> dict[str, Any]:
    entry = spec.to_json()
    if spec.name == "fused":
        entry["description"] = "the fused multimodal representation (what `Predictor.embed` returns)"
        return entry
    task = run.config.target.task
    entry["description"] = {
        "multiclass": "class scores; softmax over axis 1 gives probabilities in the order of `labels`",
        "binary": "one score; sigmoid gives the probability of labels[1] (labels[0] is 1 minus it)",
        "multilabel": "one score per label; sigmoid gives each label's probability (order of `labels`)",
        "regression": f"standardized predictions, one per target field: value = logits * std + mean ({STATE} task)",
    }.get(task, f"task outputs ({task})")
    return entry
