"""Plain-language manifest entries: how each input is made from a raw value, and what each output means."""

from __future__ import annotations

from typing import Any

from polymodal.export.graph import TensorSpec, input_name
from polymodal.modalities import Columns, Modality, Unsupported, modality
from polymodal.rundir import STATE, Run


def modality_entry(run: Run, m: str) -> dict[str, Any]:
    spec = run.config.modalities[m]
    proc = run.processors[m]
    kind = modality(spec.type)
    return {
        "type": spec.type,
        "fields": list(getattr(proc, "columns", [proc.field])),
        "encoder": type(run.model.encoders[m]).__name__,
        "presence_input": input_name(m, "present"),
        "preprocessing": kind.describe(spec, f"{STATE} modalities.{m}"),
        "preprocess": preprocess_entry(kind),
        "spec": {k: v for k, v in spec.model_dump(mode="json").items() if k != "encoder"},  # what preprocess.py reads
        "missing": (f"set {input_name(m, 'present')} to false for that record; its other inputs are then ignored "
                    "but must be finite and of the right shape: zeros, and for sequences at least one step whose "
                    "mask is true (what the processor gives a missing value)"),
    }


def preprocess_entry(kind: Modality) -> dict[str, Any]:
    """What the export's standalone preprocess.py calls for this modality type, or why it cannot."""
    plan = kind.preprocess
    if isinstance(plan, Unsupported):
        return {"unsupported": plan.reason}
    return {"reader": plan.reader, "time_axis": plan.time_axis, "columns": isinstance(kind.server, Columns)}


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
