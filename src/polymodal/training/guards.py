"""Callbacks that keep a run honest: stop on a non-finite loss or weight; carry every RNG across a resume."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

LIKELY_CAUSES = ("likely causes: a value in the data too large for float32 (run `polymodal validate`), a "
                 "learning rate too high (training.lr; training.grad_clip helps), or half-precision overflow "
                 "(training.precision)")


class NonFiniteError(ValueError):
    """Training produced a NaN or infinite loss or weight; the run is not saved."""


def first_nonfinite(model: nn.Module) -> str | None:
    """The name of the first parameter holding a NaN or infinite value, or None."""
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            return name
    return None


class FiniteGuard(pl.Callback):
    """Stops training (raises NonFiniteError) as soon as the loss, or before validation a weight, is not finite."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not math.isfinite(loss.item()):  # one scalar read, no extra kernels
            raise NonFiniteError(f"training stopped at epoch {trainer.current_epoch}, batch {batch_idx}: "
                                 f"the loss is {loss.item()}; nothing was saved as a finished run. {LIKELY_CAUSES}")

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        name = first_nonfinite(pl_module)
        if name is not None:
            raise NonFiniteError(f"training stopped at epoch {trainer.current_epoch} (optimizer step "
                                 f"{trainer.global_step}): weight {name!r} is not finite; nothing was saved as a finished run. "
                                 f"{LIKELY_CAUSES}")


class RngState(pl.Callback):
    """Saves the torch, CUDA, numpy and Python random states in each checkpoint and restores them on resume, so
    that dropout, augmentation and modality dropout draw after a resume what they would have drawn without one."""

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
        version, internal, gauss_next = random.getstate()
        state = {"torch": torch.get_rng_state(),
                 "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                           "has_gauss": int(has_gauss), "gauss": float(gauss)},
                 "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        n = state_dict["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        p = state_dict["python"]
        random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
