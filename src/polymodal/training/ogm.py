"""OGM-GE's two forms: the coefficient, the fused model's per-modality predictions and the modulation window.

`paper` (Peng et al., CVPR 2022, Eq. 10, and the authors' code): a modality whose confidence ratio
rho_m = s_m / mean(s of the others) exceeds 1 gets k_m = 1 - tanh(alpha * rho_m), the others k = 1; s_m is the
mean true-class probability of the fused model's own prediction from modality m alone (the late-fusion branches
where the fusion has them, else the fusion and head run with every other modality marked missing: for
concatenation followed by a linear classifier, the paper's W_m h_m share of the logits); the modulation runs in
the epochs `ogm_start`..`ogm_end` only (the authors' modulation_starts/ends, 0 and 50 by default).
`continuous` (polymodal's first form): k_m = 1 - tanh(alpha * (rho_m - 1)), continuous at rho = 1, confidences
from the diagnostic linear probes (or the late-fusion branches), every epoch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from polymodal.encoders.base import EncoderOutput
from polymodal.fusion.base import FusionOutput
from polymodal.model import MultimodalModel


def ogm_coefficient(rho: float, alpha: float, form: str = "paper") -> float:
    """The gradient factor of a modality with confidence ratio `rho`: 1 unless it dominates (rho > 1)."""
    if rho <= 1.0:
        return 1.0
    return 1.0 - math.tanh(alpha * (rho if form == "paper" else rho - 1.0))


def in_window(epoch: int, start: int, end: int | None) -> bool:
    """Whether `epoch` (0-based) lies in the modulation window [start, end] (end None: open)."""
    return start <= epoch and (end is None or epoch <= end)


def pooled_trial(model: MultimodalModel) -> FusionOutput | None:
    """The fusion's output on two all-zero records of pooled features, or None if it cannot run on pooled
    features alone (it needs tokens)."""
    fusion = model.fusion
    device = next(fusion.parameters(), torch.zeros(())).device
    features = {m: EncoderOutput(torch.zeros(2, d, device=device)) for m, d in fusion.in_dims.items()}  # (2, D_m)
    present = {m: torch.ones(2, dtype=torch.bool, device=device) for m in features}
    was_training = fusion.training
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            return fusion.eval()(features, present)
    except (RuntimeError, ValueError, TypeError, KeyError):
        return None
    finally:
        fusion.train(was_training)


def fused_unimodal_logits(model: MultimodalModel, features: Mapping[str, Tensor], present: Mapping[str, Tensor]
                          ) -> dict[str, Tensor]:
    """Per modality m, the model's logits (B, K) from m alone: fusion and head on the detached pooled features
    with every other modality marked missing. Evaluation mode (no dropout draws), no gradients."""
    modules = (model.fusion, model.head)
    modes = [m.training for m in modules]
    encoded = {m: EncoderOutput(x.detach()) for m, x in features.items()}
    out = {}
    try:
        with torch.no_grad():
            for m in encoded:
                alone = {k: p & (k == m) for k, p in present.items()}  # (B,) per modality
                filled, flags = model.fill_missing(encoded, alone)
                out[m] = model.head.eval()(model.fusion.eval()(filled, flags).fused)  # (B, K)
    finally:
        for module, mode in zip(modules, modes):
            module.train(mode)
    return out
