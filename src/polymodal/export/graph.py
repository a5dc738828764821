"""The exported graph: a flat-tensor view of `MultimodalModel` and the description of its inputs and outputs.

An exported model takes, per modality, the tensors its processor's `to_model` returns (in the order of the
run's modalities, keys in the processor's order) followed by one presence mask (B,) bool per modality, and
returns `logits` (B, K) and `fused` (B, D_fused).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from polymodal.data.batch import Batch
from polymodal.data.dataset import pad_ragged
from polymodal.model import MultimodalModel
from polymodal.processors import Processor

OUTPUTS = ("logits", "fused")
BATCH = "batch"


@dataclass
class TensorSpec:
    """One named input or output of an exported model.

    Attributes:
        name: graph name, `<modality>.<key>` for inputs, `<modality>.present` for presence masks.
        dtype: numpy dtype name (float32, int64, bool).
        shape: sizes, with axis names (`batch`, `<modality>_length`) where the size may vary.
        modality: the modality it belongs to (None for outputs).
        key: the processor's tensor key (`pixels`, `ids`, `mask`...), `present` for presence masks.
        min_size: per named axis, the smallest size the graph accepts (pad with masked steps to reach it).
    """

    name: str
    dtype: str
    shape: list[int | str]
    modality: str | None = None
    key: str | None = None
    min_size: dict[str, int] | None = None

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def input_name(modality: str, key: str) -> str:
    return f"{modality}.{key}"


def length_axis(modality: str) -> str:
    return f"{modality}_length"


def min_length(model: MultimodalModel, modality: str) -> int:
    """The shortest sequence a traced encoder handles like the eager one (AudioCNN pads shorter input itself,
    a branch a trace freezes)."""
    return int(getattr(model.encoders[modality], "time_stride", 1))


def example_inputs(processors: Mapping[str, Processor], lengths: Sequence[int]) -> dict[str, dict[str, Tensor]]:
    """Model inputs for len(lengths) blank records; ragged modalities get the given lengths (padded + mask)."""
    inputs: dict[str, dict[str, Tensor]] = {}
    for m, proc in processors.items():
        blank = proc.blank()
        if proc.ragged:
            items = [{k: np.repeat(v[:1], n, axis=0) for k, v in blank.items()} for n in lengths]
            raw = pad_ragged({k: [it[k] for it in items] for k in blank})
        else:
            raw = {k: torch.from_numpy(np.stack([v] * len(lengths))) for k, v in blank.items()}
        inputs[m] = proc.to_model(raw, train=False)
    return inputs


class FlatModel(nn.Module):
    """`MultimodalModel` over a flat tuple of tensors: per-modality inputs, then presence masks.

    forward(*inputs) -> (logits (B, K), fused (B, D_fused)).
    """

    def __init__(self, model: MultimodalModel, keys: Mapping[str, Sequence[str]]) -> None:
        super().__init__()
        self.model = model
        self.keys = {m: list(ks) for m, ks in keys.items()}

    def forward(self, *flat: Tensor) -> tuple[Tensor, Tensor]:
        batch = self.unflatten(flat)
        out = self.model(batch)
        return out.logits, out.fused

    def unflatten(self, flat: Sequence[Tensor]) -> Batch:
        tensors = iter(flat)
        inputs = {m: {k: next(tensors) for k in ks} for m, ks in self.keys.items()}
        present = {m: next(tensors).bool() for m in self.keys}  # (B,) each
        return Batch(inputs, present)


def flatten(inputs: Mapping[str, Mapping[str, Tensor]], present: Mapping[str, Tensor],
            keys: Mapping[str, Sequence[str]]) -> tuple[Tensor, ...]:
    """The flat argument tuple `FlatModel` takes, from a Batch's inputs and presence masks."""
    return tuple(inputs[m][k] for m, ks in keys.items() for k in ks) + tuple(present[m].bool() for m in keys)


def input_specs(model: MultimodalModel, processors: Mapping[str, Processor],
                example: Mapping[str, Mapping[str, Tensor]]) -> list[TensorSpec]:
    """Names, dtypes and shapes (with variable axes named) of the exported model's inputs."""
    specs: list[TensorSpec] = []
    for m, tensors in example.items():
        ragged = processors[m].ragged
        for k, t in tensors.items():
            shape: list[int | str] = [BATCH, *t.shape[1:]]
            lo = None
            if ragged and t.dim() >= 2:
                shape[1] = length_axis(m)
                lo = {length_axis(m): min_length(model, m)}
            specs.append(TensorSpec(input_name(m, k), _dtype(t), shape, m, k, lo))
    specs += [TensorSpec(input_name(m, "present"), "bool", [BATCH], m, "present") for m in example]
    return specs


def output_specs(model: MultimodalModel) -> list[TensorSpec]:
    return [TensorSpec("logits", "float32", [BATCH, model.head.out_features]),
            TensorSpec("fused", "float32", [BATCH, model.fusion.out_dim])]


def dynamic_axes(specs: Sequence[TensorSpec]) -> dict[str, dict[int, str]]:
    """Axis names by input/output name, for the TorchScript-based ONNX exporter."""
    return {s.name: {i: d for i, d in enumerate(s.shape) if isinstance(d, str)} for s in specs}


@contextmanager
def _silent() -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, where the exporters' C++ code writes
    graph dumps and shape warnings) to the null device; failures still surface as exceptions."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def _dtype(t: Tensor) -> str:
    return str(torch.empty(0, dtype=t.dtype).numpy().dtype)


@contextmanager
def exportable(module: nn.Module) -> Iterator[nn.Module]:
    """An export copy of `module` (see `compat.export_friendly`: GRUs without packed sequences, attention in plain
    ops, Transformer layers kept off their fused inference kernel, which has no ONNX equivalent), used under no
    grad and no warnings: the same values from operations the exporters can express. Nothing process-wide
    changes (a server in the same process keeps torch's fast paths)."""
    from polymodal.export.compat import export_friendly

    with warnings.catch_warnings(), torch.no_grad(), _silent():
        warnings.simplefilter("ignore")
        yield export_friendly(module)