"""Run an exported model (ONNX with onnxruntime, or TorchScript) on a table of records, reusing the project's
processors to make its inputs."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from polymodal.data.dataset import (
    MultimodalDataset,
    build_pipeline,
    decode,
    make_loader,
    raise_on_fatal,
    to_model_inputs,
)
from polymodal.data.sources import Table, read_table, table_root
from polymodal.factory import load_config
from polymodal.rundir import CONFIG, STATE

Records = pd.DataFrame | str | Path | list[dict[str, Any]]
Session = Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]
MANIFEST = "export.json"


def load_session(model_file: str | Path, names: list[str] | None = None) -> Session:
    """A function from named numpy inputs to the list of outputs (logits, fused) of an exported model file.

    A TorchScript model takes its inputs by position: `names` gives their order (default: from export.json).
    """
    path = Path(model_file)
    if path.suffix == ".onnx":
        return _onnx_session(path)
    if names is None:
        names = [s["name"] for s in json.loads((path.parent / MANIFEST).read_text())["inputs"]]
    return _torchscript_session(path, names)


def _onnx_session(path: Path) -> Session:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("running an ONNX export needs onnxruntime: pip install 'polymodal[export]'") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = torch.get_num_threads()  # as chosen for torch (polymodal.threads)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    wanted = [i.name for i in session.get_inputs()]

    def run(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(o) for o in session.run(None, {n: feeds[n] for n in wanted})]

    return run


def _torchscript_session(path: Path, names: list[str]) -> Session:
    module = torch.jit.load(str(path), map_location="cpu").eval()

    @torch.no_grad()
    def run(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return [t.numpy() for t in module(*[torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names])]

    return run


class ExportedPredictor:
    """Predictions from an export folder (`polymodal export`): the same records in, the same answers out as
    `Predictor`, computed by the exported model instead of PyTorch.

    Args:
        export_dir: a folder written by `export_run` (export.json, the model file, processors.json, config.yaml).
        batch_size: records per call of the exported model.
    """

    format: str | None = None

    def __init__(self, export_dir: str | Path, batch_size: int = 256) -> None:
        self.path = Path(export_dir)
        if not (self.path / MANIFEST).is_file():
            raise FileNotFoundError(f"{str(self.path)!r} is not an export folder: {MANIFEST} is missing "
                                    "(write one with `polymodal export RUN_DIR`)")
        self.manifest: dict[str, Any] = json.loads((self.path / MANIFEST).read_text())
        if self.format is not None and self.manifest["format"] != self.format:
            raise ValueError(f"{str(self.path)!r} holds a {self.manifest['format']} export, not {self.format}")
        config = load_config(self.path / CONFIG)
        self.processors, self.task = build_pipeline(config)
        state = json.loads((self.path / STATE).read_text())
        for m, proc in self.processors.items():
            proc.load_state(state["modalities"][m])
        self.task.load_state(state["task"])
        self.session = load_session(self.path / self.manifest["model_file"])
        self.batch_size = batch_size

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["labels"])

    def outputs(self, records: Records, root: str | Path | None = None,
                drop: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
        """`logits` (N, K) and `fused` (N, D) for every record; `drop` names modalities to treat as missing."""
        decoded = decode(_table(records, root), self.processors, None, keep_all=True)
        raise_on_fatal(decoded)
        dataset = MultimodalDataset(decoded, {m: p.ragged for m, p in self.processors.items()})
        chunks: list[list[np.ndarray]] = []
        for batch in make_loader(dataset, self.batch_size, shuffle=False):
            batch = to_model_inputs(batch.without(drop), self.processors, train=False)
            chunks.append(self.session(self.feeds(batch.inputs, batch.present)))
        return {name: np.concatenate([c[i] for c in chunks]) for i, name in enumerate(("logits", "fused"))}

    def feeds(self, inputs: Mapping[str, Mapping[str, torch.Tensor]],
              present: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Named numpy inputs of the exported graph from a batch's model inputs and presence masks; sequences
        shorter than an input's `min_size` are padded with masked steps."""
        feeds: dict[str, np.ndarray] = {}
        for spec in self.manifest["inputs"]:
            m, key = spec["modality"], spec["key"]
            value = present[m] if key == "present" else inputs[m][key]
            feeds[spec["name"]] = _pad(value.cpu().numpy(), min(spec.get("min_size", {}).values(), default=1))
        return feeds

    def predict(self, records: Records, root: str | Path | None = None) -> np.ndarray:
        """One prediction per record, in the data's label space (class names or values)."""
        return np.asarray(self.task.predict(torch.from_numpy(self.outputs(records, root)["logits"])), dtype=object)

    def predict_proba(self, records: Records, root: str | Path | None = None,
                      drop: frozenset[str] = frozenset()) -> pd.DataFrame:
        """Class probabilities, one column per class (classification exports only)."""
        proba = self.task.proba(torch.from_numpy(self.outputs(records, root, drop)["logits"]))
        if not proba:
            raise ValueError(f"predict_proba needs a classification export; this one is {self.manifest['task']}")
        return pd.DataFrame(proba)

    def embed(self, records: Records, root: str | Path | None = None) -> np.ndarray:
        """The fused representation (N, D_fused) of every record."""
        return self.outputs(records, root)["fused"]


class OnnxPredictor(ExportedPredictor):
    """`ExportedPredictor` for an ONNX export, run with onnxruntime."""

    format = "onnx"


class TorchScriptPredictor(ExportedPredictor):
    """`ExportedPredictor` for a TorchScript export."""

    format = "torchscript"


def _pad(x: np.ndarray, length: int) -> np.ndarray:
    """Pad axis 1 of (B, T, ...) with zeros (False for masks) up to `length` steps."""
    if x.ndim < 2 or x.shape[1] >= length:
        return x
    width = [(0, 0), (0, length - x.shape[1])] + [(0, 0)] * (x.ndim - 2)
    return np.pad(x, width)


def _table(records: Records, root: str | Path | None) -> Table:
    if isinstance(records, (str, Path)):
        path = Path(records)
        return Table(read_table(path), Path(root) if root else table_root(path), path.name)
    frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    return Table(frame.reset_index(drop=True), Path(root) if root else Path.cwd(), "input")
