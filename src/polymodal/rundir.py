"""The run directory: resolved config, weights in safetensors, fitted processor state as JSON.

Loading a run reads YAML, JSON and safetensors only; nothing is unpickled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from polymodal.config import Config, ConfigError, dump_config
from polymodal.data.dataset import build_pipeline
from polymodal.factory import build_model, load_config
from polymodal.model import MultimodalModel
from polymodal.processors import Processor
from polymodal.tasks import Task

CONFIG, WEIGHTS, STATE, METRICS = "config.yaml", "model.safetensors", "processors.json", "metrics.json"


@dataclass
class Run:
    """A trained run loaded back: everything needed to predict."""

    config: Config
    processors: dict[str, Processor]
    task: Task
    model: MultimodalModel
    path: Path


def save_pipeline(run_dir: Path, config: Config, processors: Mapping[str, Processor], task: Task) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / CONFIG)
    state = {"modalities": {m: p.state() for m, p in processors.items()}, "task": task.state()}
    (run_dir / STATE).write_text(json.dumps(state))


def save_weights(run_dir: Path, model: MultimodalModel) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(run_dir / WEIGHTS))


def load_run(run_dir: str | Path) -> Run:
    """Rebuild a trained model and its fitted processors from a run directory."""
    path = Path(run_dir)
    for name in (CONFIG, STATE, WEIGHTS):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{str(path)!r} is not a complete run directory: {name} is missing "
                                    "(train it with `polymodal train CONFIG`)")
    config = load_config(path / CONFIG)
    processors, task = build_pipeline(config)
    state = json.loads((path / STATE).read_text())
    for m, proc in processors.items():
        proc.load_state(state["modalities"][m])
    task.load_state(state["task"])
    model = build_model(config, processors, task.num_outputs)
    model.load_state_dict(load_file(str(path / WEIGHTS)))
    model.eval()
    return Run(config, processors, task, model, path)


# Spec keys that do not change what a processor fits (the column name, the encoder, error policy, augmentation).
_NOT_FITTED = {"field", "encoder", "on_error", "augment"}


def init_processors(config: Config, processors: Mapping[str, Processor], run_dir: str | Path) -> None:
    """Load the fitted state of a previous run (`training.init_from`) into these processors.

    Every modality must exist in that run with the same processing settings, so that its encoders see inputs
    prepared the same way.
    """
    path = Path(run_dir)
    for name in (CONFIG, STATE, WEIGHTS):
        if not (path / name).is_file():
            raise ConfigError(f"training.init_from: {str(path)!r} is not a complete run directory ({name} is missing)")
    source = load_config(path / CONFIG)
    state = json.loads((path / STATE).read_text())["modalities"]
    for m, proc in processors.items():
        mine = config.modalities[m].model_dump(exclude=_NOT_FITTED)
        theirs = source.modalities[m].model_dump(exclude=_NOT_FITTED) if m in source.modalities else None
        if mine != theirs:
            raise ConfigError(f"training.init_from: modality {m!r} is not processed as in {str(path)!r} "
                              f"(here {mine}, there {theirs}); its settings must match to reuse the fitted state")
        proc.load_state(state[m])


def init_weights(model: nn.Module, run_dir: str | Path, prefixes: tuple[str, ...] = (
        "encoders.", "fusion.", "objectives.")) -> list[str]:
    """Copy the tensors of a previous run whose name (under `prefixes`) and shape match; returns their names.

    The task head is not copied: a fine-tuning run learns its own.
    """
    saved = load_file(str(Path(run_dir) / WEIGHTS))
    own = model.state_dict()
    match = {k: v for k, v in saved.items() if k.startswith(prefixes) and k in own and own[k].shape == v.shape}
    if not match:
        raise ConfigError(f"training.init_from: no encoder, fusion or objective weights of {str(run_dir)!r} "
                          "match this model by name and shape")
    model.load_state_dict(match, strict=False)
    return sorted(match)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False))
