"""Lightning checkpoints without the unchanged tensors of weight packages (frozen pretrained encoders).

`PackagedCheckpoints` leaves them out of every checkpoint it sees saved and lists their names under
`packaged_tensors`; the model is always built from the same packages before a checkpoint is loaded into it, so those
tensors are already in place (`load_checkpoint_state`, and Lightning's resume with non-strict loading followed by
the same check).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from polymodal.encoders.pretrained.reference import split_state

KEY = "packaged_tensors"


class PackagedCheckpoints(pl.Callback):
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        pl_module.strict_loading = False  # resume: the referenced tensors are absent; checked in on_load_checkpoint

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
                           ) -> None:
        _, refs = split_state(pl_module)
        names = [t for ref in refs.values() for t in ref["tensors"]]
        state = checkpoint["state_dict"]
        for name in names:
            state.pop(name, None)
        checkpoint[KEY] = names

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
                           ) -> None:
        check_complete(pl_module, checkpoint)


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
