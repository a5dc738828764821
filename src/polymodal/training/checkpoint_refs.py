"""Training checkpoints without the unchanged tensors of weight packages (frozen pretrained encoders).

`strip_packaged` leaves them out of the state a checkpoint stores and lists their names under `packaged_tensors`;
the model is always built from the same packages before a checkpoint is loaded into it, so those tensors are
already in place (`load_checkpoint_state` checks that every other tensor is in the checkpoint).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from polymodal.encoders.pretrained.reference import split_state

KEY = "packaged_tensors"


def strip_packaged(module: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The module's tensors to store (on the CPU, detached) and the names of the package tensors left out."""
    state, refs = split_state(module)
    return state, [t for ref in refs.values() for t in ref["tensors"]]


def check_complete(module: nn.Module, checkpoint: dict[str, Any]) -> None:
    """Every tensor of `module` is in the checkpoint or among the package tensors it left out."""
    lacking = set(module.state_dict()) - set(checkpoint["state_dict"]) - set(checkpoint.get(KEY, []))
    if lacking:
        raise ValueError(f"checkpoint lacks tensors {sorted(lacking)[:5]}; it does not belong to this model")


def load_checkpoint_state(module: nn.Module, checkpoint: dict[str, Any]) -> None:
    """Load a checkpoint's tensors into `module`; those of weight packages stay as the module was built."""
    check_complete(module, checkpoint)
    with torch.no_grad():
        unexpected = module.load_state_dict(checkpoint["state_dict"], strict=False).unexpected_keys
    if unexpected:
        raise ValueError(f"checkpoint holds tensors {unexpected[:5]} that this model lacks; it does not belong to it")
