"""The run directory: resolved config, weights in safetensors, fitted processor state as JSON, a manifest.

A run is written into a temporary sibling folder (`.NAME.partial`) and moved into place when complete, so a
run directory never mixes two runs. Its manifest holds the sha256 of the config, weights, processors and
`packages.json`; loading checks them. Pretrained tensors left unchanged (frozen encoders) are not copied: the
weights file leaves them out and `packages.json` names the weight package, its version and the sha256 of its
files, which loading checks against the installed package (`encoders.pretrained.reference`). Loading a run reads
YAML, JSON and safetensors only; nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from polymodal.config import Config, ConfigError, dump_config
from polymodal.data.dataset import build_pipeline
from polymodal.encoders.pretrained.reference import PACKAGES_JSON, check_packages, load_state, read_refs
from polymodal.encoders.pretrained.reference import save_weights as save_referenced
from polymodal.ensemble.rundir import ENSEMBLE, load_ensemble
from polymodal.factory import build_model, load_config
from polymodal.modalities import modality
from polymodal.model import MultimodalModel
from polymodal.processors import Processor
from polymodal.tasks import Task

CONFIG, WEIGHTS, STATE, METRICS = "config.yaml", "model.safetensors", "processors.json", "metrics.json"
MANIFEST = "manifest.json"
CHECKED = (CONFIG, STATE, WEIGHTS)  # the files whose sha256 the manifest holds (and packages.json where written)


class RunError(ValueError):
    """A run directory that cannot be used as it is: incomplete, damaged, or in the way of a new run."""


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
    dump_config(with_default_encoders(config), run_dir / CONFIG)
    state = {"modalities": {m: p.state() for m, p in processors.items()}, "task": task.state()}
    (run_dir / STATE).write_text(json.dumps(state))


def save_weights(run_dir: Path, model: MultimodalModel) -> None:
    """The model's tensors, those of weight packages referred to by `packages.json` instead of copied."""
    save_referenced(run_dir, WEIGHTS, model)


def with_default_encoders(config: Config) -> Config:
    """The config with each modality's encoder named, defaults included (so the resolved config shows them)."""
    named = {m: s if s.encoder is not None else s.model_copy(update={"encoder": modality(s.type).encoder.model_copy()})
             for m, s in config.modalities.items()}
    return config.model_copy(update={"modalities": named})


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(run_dir: Path) -> None:
    names = [n for n in (*CHECKED, PACKAGES_JSON) if n in CHECKED or (run_dir / n).is_file()]
    write_json(run_dir / MANIFEST, {"sha256": {name: sha256(run_dir / name) for name in names}})


def check_run(path: Path) -> None:
    """Refuse a run directory that is incomplete or whose files differ from its manifest (truncated, flipped)."""
    for name in (*CHECKED, MANIFEST):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{str(path)!r} is not a complete run directory: {name} is missing "
                                    "(train it with `polymodal train CONFIG`)")
    try:
        expected = json.loads((path / MANIFEST).read_text())["sha256"]
    except (ValueError, KeyError, TypeError) as err:
        raise RunError(f"{str(path / MANIFEST)!r} is damaged ({err}); train the run again") from None
    for name in (*CHECKED, *([PACKAGES_JSON] if PACKAGES_JSON in expected else [])):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{str(path)!r} is not a complete run directory: {name} is missing (restore it "
                                    "or train the run again)")
        if expected.get(name) != sha256(path / name):
            raise RunError(f"{str(path / name)!r} does not match the run's manifest (truncated, damaged or "
                           "replaced after training); refusing to load it. Restore the file or train again.")


def partial_dir(run_dir: Path) -> Path:
    """Where a run is written until it is complete (a sibling, so that the final move is a rename)."""
    return run_dir.parent / f".{run_dir.name}.partial"


def start_run(run_dir: Path, resume: bool = False, overwrite: bool = False) -> Path:
    """The folder to write a new run into (fresh, or the interrupted one with `resume`); the final run directory
    is never touched here. An existing run is only replaced with `overwrite` (or continued with `resume`)."""
    work = partial_dir(run_dir)
    if resume:
        return _resume_from(run_dir, work)
    if run_dir.exists() and any(run_dir.iterdir()) and not overwrite:
        raise RunError(f"run directory {str(run_dir)!r} already exists; pass --overwrite to replace it (it stays "
                       "as it is until the new run is complete), --resume to continue it, or --out for another")
    if work.exists():
        shutil.rmtree(work)  # what an interrupted run left: restarted from scratch, never mixed in
    work.mkdir(parents=True)
    return work


def _resume_from(run_dir: Path, work: Path) -> Path:
    last = Path("checkpoints") / "last.ckpt"
    if (work / last).is_file():
        check_checkpoint(work / last)
        return work
    if (run_dir / last).is_file():
        check_checkpoint(run_dir / last)
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(run_dir, work)
        return work
    raise RunError(f"--resume: no checkpoint to resume from ({str(work / last)!r} and {str(run_dir / last)!r} do "
                   "not exist); train without --resume to start from scratch")


def check_checkpoint(path: Path) -> None:
    """Refuse a checkpoint that cannot be read as tensors and plain data (truncated, damaged, a foreign pickle)."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError... for a damaged file
        raise RunError(f"--resume: checkpoint {str(path)!r} cannot be read ({type(err).__name__}: "
                       f"{str(err).splitlines()[0] if str(err) else ''}); it may have been cut short while being "
                       "written. Delete it and train without --resume to start from scratch") from None


def finish_run(work: Path, run_dir: Path) -> None:
    """Move a complete run into place, replacing the run that was there (if any) only now."""
    old = run_dir.parent / f".{run_dir.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if run_dir.exists():
        run_dir.rename(old)
    work.rename(run_dir)
    if old.exists():
        shutil.rmtree(old)


def load_run(run_dir: str | Path) -> Run:
    """Rebuild a trained model and its fitted processors from a run directory (checked against its manifest)."""
    path = Path(run_dir)
    check_run(path)
    if (path / ENSEMBLE).is_file():  # an ensemble (`polymodal fit`): members' tensors in the same safetensors
        return Run(*load_ensemble(path), path)  # type: ignore[arg-type]
    config = load_config(path / CONFIG)
    processors, task = build_pipeline(config)
    state = json.loads((path / STATE).read_text())
    for m, proc in processors.items():
        proc.load_state(state["modalities"][m])
    task.load_state(state["task"])
    refs = read_refs(path)
    check_packages(refs, str(path))  # referenced pretrained weights: the same files must be installed here
    model = build_model(config, processors, task.num_outputs)
    load_state(model, read_weights(path / WEIGHTS), refs, str(path))
    model.eval()
    return Run(config, processors, task, model, path)


def read_weights(path: Path) -> dict[str, Any]:
    """The tensors of a safetensors file; anything else (a pickle, a damaged file) is refused with a RunError."""
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types, and OSError for unreadable files
        raise RunError(f"{str(path)!r} is not a readable safetensors file ({type(err).__name__}: {err}); "
                       "train the run again") from None


# Spec keys that do not change what a processor fits (the column name, the encoder, error policy, augmentation).
_NOT_FITTED = {"field", "encoder", "on_error", "augment"}


def init_processors(config: Config, processors: Mapping[str, Processor], run_dir: str | Path) -> None:
    """Load the fitted state of a previous run (`training.init_from`) into these processors.

    Every modality must exist in that run with the same processing settings, so that its encoders see inputs
    prepared the same way.
    """
    path = Path(run_dir)
    try:
        check_run(path)
    except (FileNotFoundError, RunError) as err:
        raise ConfigError(f"training.init_from: {err}") from None
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
    saved = read_weights(Path(run_dir) / WEIGHTS)
    own = model.state_dict()
    match = {k: v for k, v in saved.items() if k.startswith(prefixes) and k in own and own[k].shape == v.shape}
    if not match:
        raise ConfigError(f"training.init_from: no encoder, fusion or objective weights of {str(run_dir)!r} "
                          "match this model by name and shape")
    model.load_state_dict(match, strict=False)
    return sorted(match)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False))
