"""What keeps a run honest: the error for a non-finite loss or weight; every random state carried across a resume."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import nn

LIKELY_CAUSES = ("likely causes: a value in the data too large for float32 (run `polymodal validate`), a "
                 "learning rate too high (training.lr; training.grad_clip helps), or half-precision overflow "
                 "(training.precision)")


class NonFiniteError(ValueError):
    """Training produced a NaN or infinite loss or weight; the run is not saved."""


def first_nonfinite(model: nn.Module) -> str | None:
    """The name of the first parameter holding a NaN or infinite value, or None (one read from the device)."""
    params = list(model.named_parameters())
    if not params:
        return None
    device = params[0][1].device
    finite = torch.stack([torch.isfinite(p).all().to(device) for _, p in params])  # (P,)
    if bool(finite.all()):
        return None
    return params[int((~finite).nonzero()[0, 0])][0]


def rng_state() -> dict[str, Any]:
    """The torch, CUDA, numpy and Python random states as tensors and plain data (a checkpoint stores them so that
    dropout, augmentation and modality dropout draw after a resume what they would have drawn without one)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state_dict: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    torch.set_rng_state(state_dict["torch"])
    n = state_dict["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state_dict["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state_dict and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state_dict["cuda"])
