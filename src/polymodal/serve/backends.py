"""The server's forward pass: PyTorch (default) or onnxruntime on the run's ONNX export (`--backend onnx`).

A backend takes a batch of model inputs (processors already applied) and returns the model's Output; the
ONNX one fills `logits` and `fused` only, which is all the server reads. Explanations always use PyTorch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from polymodal.data.batch import Batch
from polymodal.output import Output
from polymodal.rundir import Run

BACKENDS = ("torch", "onnx")


class Backend(Protocol):
    device: torch.device

    def __call__(self, batch: Batch) -> Output: ...


class TorchBackend:
    """The run's PyTorch model in inference mode on `device`."""

    def __init__(self, run: Run, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = run.model.to(self.device).eval()

    @torch.inference_mode()
    def __call__(self, batch: Batch) -> Output:
        return self.model(batch)


class OnnxBackend:
    """onnxruntime on the ONNX export of the run (`RUN_DIR/export_onnx`, written by the first start if absent)."""

    device = torch.device("cpu")

    def __init__(self, run: Run, export_dir: str | Path | None = None) -> None:
        from polymodal.export.runtime import MANIFEST, OnnxPredictor

        folder = Path(export_dir) if export_dir is not None else run.path / "export_onnx"
        if not (folder / MANIFEST).is_file():
            from polymodal.export import export_run

            folder = export_run(run.path, "onnx", out=folder).out_dir
        self.exported = OnnxPredictor(folder)

    def __call__(self, batch: Batch) -> Output:
        logits, fused = self.exported.session(self.exported.feeds(batch.inputs, batch.present))[:2]
        return Output(logits=torch.from_numpy(logits), fused=torch.from_numpy(fused), features={})


def build_backend(name: str, run: Run, device: str = "cpu") -> Backend:
    """The backend called `name` (one of BACKENDS) for a loaded run."""
    if name == "torch":
        return TorchBackend(run, device)
    if name == "onnx":
        if device != "cpu":
            raise ValueError(f"--backend onnx runs on the CPU; drop --device {device} or use --backend torch")
        return OnnxBackend(run)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
