"""Export a trained run to ONNX or TorchScript, and run the export on records.

`export_run(run_dir, "onnx")` writes model.onnx, export.json (inputs, outputs, labels, task, how each input is
made), processors.json and config.yaml; `OnnxPredictor(export_dir).predict_proba(records)` runs it with
onnxruntime. torch.onnx and onnxruntime are imported only when used (extra `export`).
"""

from __future__ import annotations

from polymodal.export.core import FORMATS, ExportError, ExportResult, export_run
from polymodal.export.runtime import ExportedPredictor, OnnxPredictor, TorchScriptPredictor

__all__ = ["FORMATS", "ExportError", "ExportResult", "ExportedPredictor", "OnnxPredictor", "TorchScriptPredictor",
           "export_run"]
