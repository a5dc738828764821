"""An ensemble as a run directory: config.yaml, processors.json, model.safetensors (every member's tensors) and
ensemble.json (members, their kinds, modality mappings and weights). Nothing is pickled.

The ensemble's modalities are the members' distinct processors: two members that process a column the same
way (same settings, same fitted state) share one modality; otherwise each gets its own (`text`, `text_2`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import nn

from polymodal.config import Component, Config, dump_config, load_config, parse_config
from polymodal.data.dataset import build_pipeline
from polymodal.encoders.pretrained.reference import check_packages, load_state, read_refs, save_weights
from polymodal.ensemble.classical import CLASSICAL
from polymodal.ensemble.model import EnsembleModel, Slot
from polymodal.factory import build_model
from polymodal.model import MultimodalModel
from polymodal.processors import Processor
from polymodal.tasks import Task

ENSEMBLE = "ensemble.json"


@dataclass
class Member:
    """A trained model with the config of its modalities and its fitted processors."""

    name: str
    config: Config
    processors: dict[str, Processor]
    module: nn.Module

    @property
    def kind(self) -> str:
        return "run" if isinstance(self.module, MultimodalModel) else str(getattr(self.module, "kind"))


def _union(members: Sequence[Member]) -> tuple[dict[str, Any], dict[str, Processor], dict[str, dict[str, str]]]:
    """Distinct (settings, fitted state) processors under unique names, and each member's mapping to them."""
    specs: dict[str, Any] = {}
    procs: dict[str, Processor] = {}
    keys: dict[str, str] = {}
    maps: dict[str, dict[str, str]] = {}
    for member in members:
        maps[member.name] = {}
        for m, proc in member.processors.items():
            spec = member.config.modalities[m].model_copy(update={"field": proc.field})
            key = json.dumps([spec.model_dump(mode="json", exclude={"encoder", "train"}), proc.state()],
                             sort_keys=True)
            if key not in keys:
                name = m if m not in specs else f"{m}_{len(specs) + 1}"
                keys[key], specs[name], procs[name] = name, spec, proc
            maps[member.name][m] = keys[key]
    return specs, procs, maps


def save_ensemble(run_dir: Path, name: str, members: Sequence[Member], weights: Mapping[str, float],
                  task: Task) -> None:
    """Write the ensemble of `members` (weights by member name; zero-weight members are left out)."""
    members = [m for m in members if weights.get(m.name, 0) > 0]
    specs, procs, maps = _union(members)
    first = members[0].config
    config = first.model_copy(update={"name": name, "modalities": specs, "fusion": Component(name="concat"),
                                      "output_dir": None, "objectives": []})
    config = Config.model_validate(config.model_dump(mode="json"))
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / "config.yaml")
    state = {"modalities": {m: p.state() for m, p in procs.items()}, "task": task.state()}
    (run_dir / "processors.json").write_text(json.dumps(state))
    model = EnsembleModel({m.name: m.module for m in members},
                          {m.name: Slot(m.kind, maps[m.name]) for m in members}, weights, config.target.task)
    save_weights(run_dir, "model.safetensors", model)  # weight packages' tensors referred to, not copied
    (run_dir / ENSEMBLE).write_text(json.dumps({"members": [_describe(m, maps[m.name], weights[m.name])
                                                            for m in members]}, indent=2))


def _describe(member: Member, modalities: dict[str, str], weight: float) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": member.name, "kind": member.kind, "weight": weight, "modalities": modalities}
    if member.kind == "run":
        entry["config"] = member.config.model_dump(mode="json")
    else:
        entry["options"] = member.module.options()  # type: ignore[operator]
    return entry


def load_ensemble(path: Path) -> tuple[Config, dict[str, Processor], Task, EnsembleModel]:
    """Rebuild an ensemble run written by `save_ensemble`."""
    config = load_config(path / "config.yaml")
    processors, task = build_pipeline(config)
    state = json.loads((path / "processors.json").read_text())
    for m, proc in processors.items():
        proc.load_state(state["modalities"][m])
    task.load_state(state["task"])
    entries = json.loads((path / ENSEMBLE).read_text())["members"]
    check_packages(read_refs(path), str(path))  # before building members from the installed packages
    members = {e["name"]: _build_member(e, processors, task.num_outputs) for e in entries}
    slots = {e["name"]: Slot(e["kind"], e["modalities"]) for e in entries}
    model = EnsembleModel(members, slots, {e["name"]: e["weight"] for e in entries}, config.target.task)
    refs = read_refs(path)
    load_state(model, load_file(str(path / "model.safetensors")), refs, str(path))
    return config, processors, task, model.eval()


def _build_member(entry: dict[str, Any], processors: Mapping[str, Processor], num_outputs: int) -> nn.Module:
    if entry["kind"] == "run":
        config = parse_config(entry["config"], origin=f"ensemble member {entry['name']!r}")
        own = {m: processors[e] for m, e in entry["modalities"].items()}
        return build_model(config, own, num_outputs)
    if entry["kind"] not in CLASSICAL:
        raise ValueError(f"ensemble member {entry['name']!r}: unknown kind {entry['kind']!r}; known: run, "
                         f"{', '.join(CLASSICAL)}")
    return CLASSICAL[entry["kind"]](**entry["options"])
