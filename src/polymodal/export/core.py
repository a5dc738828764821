"""Export a trained run to ONNX or TorchScript, with its preprocessing state and a manifest."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polymodal.export.graph import (
    OUTPUTS,
    FlatModel,
    TensorSpec,
    dynamic_axes,
    example_inputs,
    exportable,
    flatten,
    input_specs,
    min_length,
    output_specs,
)
from polymodal.export.parts import locate_failure
from polymodal.rundir import CONFIG, STATE, WEIGHTS, Run, load_run

FORMATS: tuple[str, ...] = ("onnx", "torchscript")
EXPORTERS: tuple[str, ...] = ("auto", "legacy", "dynamo")
MANIFEST = "export.json"
PREPROCESS = "preprocess.py"  # standalone numpy preprocessing, copied next to the model
MODEL_FILES = {"onnx": "model.onnx", "torchscript": "model.pt"}
DEFAULT_OPSET = 18
MIN_OPSET, MAX_OPSET = 14, 20  # what both exporters can write (the legacy one stops at 20)
TOLERANCE = 1e-4
AUTO_ORDER = ("legacy", "dynamo")


class ExportError(ValueError):
    """The run cannot be exported in the format asked for; the message names the part at fault."""


@dataclass
class ExportResult:
    """Where the export went and how it was made."""

    out_dir: Path
    model_file: Path
    format: str
    exporter: str
    max_abs_diff: float
    note: str = ""


def export_run(run_dir: str | Path, format: str = "onnx", out: str | Path | None = None,
               opset: int | None = None, exporter: str = "auto", fallback: bool = False) -> ExportResult:
    """Export the model of a run directory to `out` (default RUN_DIR/export_<format>).

    The export is checked against PyTorch on example batches of other sizes and sequence lengths, with a
    modality missing in some records; it is kept only if every output matches within 1e-4.

    Args:
        run_dir: a trained run directory.
        format: "onnx" or "torchscript".
        out: output folder; gets the model file, export.json, processors.json and config.yaml.
        opset: ONNX opset (default 18; onnx only).
        exporter: "legacy" (torch.onnx, TorchScript-based), "dynamo" (torch.export-based) or "auto" (legacy,
            then dynamo if legacy fails).
        fallback: if ONNX export fails, write TorchScript instead (and say so in `note`) rather than raise.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown ONNX exporter {exporter!r}; choose one of: {', '.join(EXPORTERS)}")
    if opset is not None and format != "onnx":
        raise ValueError("--opset applies to ONNX export only")
    if opset is not None and not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"ONNX opset {opset} is not supported; choose one from {MIN_OPSET} to {MAX_OPSET}")
    run = _load(run_dir)
    target = Path(out) if out is not None else run.path / f"export_{format}"
    target.mkdir(parents=True, exist_ok=True)
    probe = _probe(run)
    if format == "torchscript":
        diff = _torchscript(probe, target)
        return _finish(run, probe, target / MODEL_FILES["torchscript"], "torch.jit.trace", None, diff)
    try:
        name, diff = _onnx(probe, target, opset or DEFAULT_OPSET, exporter)
    except ExportError as err:
        if not fallback:
            raise
        diff = _torchscript(probe, target)
        note = f"ONNX export failed, wrote TorchScript instead: {err}"
        return _finish(run, probe, target / MODEL_FILES["torchscript"], "torch.jit.trace", None, diff, note)
    return _finish(run, probe, target / MODEL_FILES["onnx"], name, opset or DEFAULT_OPSET, diff)


def _load(run_dir: str | Path) -> Run:
    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"run directory {str(path)!r} does not exist")
    missing = [name for name in (CONFIG, STATE, WEIGHTS) if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{str(path)!r} is not a run directory: {', '.join(missing)} missing "
                                "(train one with `polymodal train CONFIG`)")
    run = load_run(path)
    reason = run.model.head.not_exportable
    if reason:
        raise ExportError(f"run {str(path)!r} has task {run.config.target.task!r}, which export does not support: "
                          f"{reason}; export takes runs whose head maps the fused representation to logits "
                          "(classification, regression)")
    return run


@dataclass
class Probe:
    """The flat model, the example arguments it is traced with, further batches it is checked on, input specs."""

    flat: FlatModel
    args: tuple[Tensor, ...]
    checks: list[tuple[Tensor, ...]]
    inputs: list[TensorSpec]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.inputs]


def _probe(run: Run) -> Probe:
    shortest = max([min_length(run.model, m) for m, p in run.processors.items() if p.ragged] or [1])
    # long enough that no pooled length is 0 or 1 (torch.export would freeze such a size)
    example = example_inputs(run.processors, [4 * shortest + 3, 2 * shortest + 1])
    keys = {m: list(t) for m, t in example.items()}
    flat = FlatModel(run.model, keys).eval()
    args = flatten(example, {m: torch.ones(2, dtype=torch.bool) for m in keys}, keys)
    checks = [args]
    for lengths in ([4 * shortest + 9, shortest, 2 * shortest], [shortest + 1]):
        b = len(lengths)
        present = {m: (torch.arange(b) + i) % 3 != 1 for i, m in enumerate(keys)}  # (B,) records miss some
        checks.append(flatten(_noisy(example_inputs(run.processors, lengths), seed=b), present, keys))
    return Probe(flat, args, checks, input_specs(run.model, run.processors, example))


def _noisy(inputs: dict[str, dict[str, Tensor]], seed: int) -> dict[str, dict[str, Tensor]]:
    """The inputs with every float tensor replaced by standard normal values (blank records are all alike)."""
    gen = torch.Generator().manual_seed(seed)
    return {m: {k: torch.randn(t.shape, generator=gen) if t.is_floating_point() else t for k, t in d.items()}
            for m, d in inputs.items()}


def _verify(probe: Probe, model_file: Path) -> float:
    """The largest output difference between the export and PyTorch over the check batches (raise if > 1e-4)."""
    from polymodal.export.runtime import load_session

    session = load_session(model_file, probe.names)
    diff = 0.0
    for args in probe.checks:
        with torch.no_grad():  # the eager model as it predicts, not its export-time stand-ins
            expected = [t.numpy() for t in probe.flat(*args)]
        got = session(dict(zip(probe.names, (a.numpy() for a in args))))
        diff = max([diff, *(float(np.abs(g - e).max()) for g, e in zip(got, expected))])
    if not diff <= TOLERANCE:
        raise ExportError(f"{model_file.name} gives outputs that differ from PyTorch's by {diff:.3g} (> {TOLERANCE}) "
                          "on batches of other sizes or lengths: a shape was frozen when the model was traced")
    return diff


def _onnx(probe: Probe, target: Path, opset: int, exporter: str) -> tuple[str, float]:
    """Export with the first exporter that gives a faithful graph; returns its name and the checked difference."""
    order = list(AUTO_ORDER) if exporter == "auto" else [exporter]
    path = target / MODEL_FILES["onnx"]
    errors: dict[str, Exception] = {}
    for name in order:
        try:
            _onnx_with(name, probe, path, opset)
            return name, _verify(probe, path)
        except Exception as err:  # noqa: BLE001  (exporter internals raise many types; reported below)
            errors[name] = err
    path.unlink(missing_ok=True)
    part = locate_failure(probe.flat, probe.args, opset, order[0])
    detail = "; ".join(f"{n} exporter: {_first_line(e)}" for n, e in errors.items())
    raise ExportError(f"cannot express {part} in ONNX ({detail}); export with --format torchscript, or pass "
                      "--fallback to write TorchScript when ONNX fails")


def _onnx_with(name: str, probe: Probe, path: Path, opset: int) -> None:
    outputs = output_specs(probe.flat.model)
    with exportable(probe.flat) as flat:
        if name == "legacy":
            torch.onnx.export(flat, probe.args, str(path), input_names=probe.names,
                              output_names=list(OUTPUTS), opset_version=opset, dynamo=False,
                              dynamic_axes=dynamic_axes([*probe.inputs, *outputs]))
            return
        program = torch.onnx.export(flat, probe.args, input_names=probe.names, output_names=list(OUTPUTS),
                                    opset_version=opset, dynamo=True, verbose=False,
                                    dynamic_shapes=(_dynamic_shapes(probe.inputs),))
        assert program is not None
        program.save(str(path), external_data=False)


def _dynamic_shapes(inputs: Sequence[TensorSpec]) -> tuple[dict[int, Any], ...]:
    from torch.export import Dim

    dims: dict[str, Any] = {}
    for s in inputs:
        for d in s.shape:
            if isinstance(d, str) and d not in dims:
                dims[d] = Dim(d, min=(s.min_size or {}).get(d, 1))
    return tuple({i: dims[d] for i, d in enumerate(s.shape) if isinstance(d, str)} for s in inputs)


def _torchscript(probe: Probe, target: Path) -> float:
    path = target / MODEL_FILES["torchscript"]
    with exportable(probe.flat) as flat:
        traced = torch.jit.trace(flat, probe.args, check_trace=False)
    torch.jit.save(traced, str(path))
    return _verify(probe, path)


def _finish(run: Run, probe: Probe, model_file: Path, exporter: str, opset: int | None, diff: float,
            note: str = "") -> ExportResult:
    shutil.copyfile(run.path / STATE, model_file.parent / STATE)
    shutil.copyfile(run.path / CONFIG, model_file.parent / CONFIG)
    shutil.copyfile(Path(__file__).parent / PREPROCESS, model_file.parent / PREPROCESS)
    fmt = "onnx" if model_file.suffix == ".onnx" else "torchscript"
    inputs = probe.inputs
    if fmt == "onnx":
        kept = set(graph_inputs(model_file))
        inputs = [s for s in inputs if s.name in kept]
    manifest = build_manifest(run, model_file.name, fmt, exporter, inputs, opset, diff, note)
    (model_file.parent / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return ExportResult(model_file.parent, model_file, fmt, exporter, diff, note)


def graph_inputs(model_file: Path) -> list[str]:
    """The input names an ONNX graph kept (an exporter drops inputs the outputs do not depend on)."""
    import onnx

    return [i.name for i in onnx.load(str(model_file), load_external_data=False).graph.input]


def build_manifest(run: Run, model_file: str, fmt: str, exporter: str, inputs: Sequence[TensorSpec],
                   opset: int | None, diff: float, note: str) -> dict[str, Any]:
    """What a consumer in any language needs to feed the exported model and read its outputs."""
    from polymodal.export.describe import modality_entry, output_entry

    return {
        "format": fmt,
        "model_file": model_file,
        "exporter": exporter,
        "opset": opset,
        "torch_version": torch.__version__,
        "run_name": run.config.name,
        "task": run.config.target.task,
        "target": run.config.target.field,
        "labels": list(getattr(run.task, "classes", []) or []),
        "inputs": [s.to_json() for s in inputs],
        "outputs": [output_entry(s, run) for s in output_specs(run.model)],
        "modalities": {m: modality_entry(run, m) for m in run.processors},
        "preprocessing": {"state": STATE, "config": CONFIG, "module": PREPROCESS},
        "check": {"max_abs_diff": diff, "tolerance": TOLERANCE},
        "note": note,
    }


def _first_line(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    text = next((ln for ln in lines if not ln.startswith(("[torch.onnx]", "Traceback"))), type(err).__name__)
    return f"{type(err).__name__}: {text[:300]}"

