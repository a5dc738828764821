"""`reliable`: reliability-gated product of calibrated per-modality experts.

Each modality m has its own MLP branch; the task head turns it into logits f_m, trained to stand alone (its own
cross-entropy, as in qmf), so that every subset of modalities still gives a prediction. The decision is a
weighted log-linear pool (a product of experts, Hinton 2002; the logarithmic opinion pool of Genest and Zidek
1986) of temperature-scaled experts:

    logits = sum_m w_m * log_softmax(f_m / T_m)

- T_m: one temperature per modality, fitted after training on the validation split by minimising that
  modality's negative log-likelihood (temperature scaling, Guo, Pleiss, Sun and Weinberger, "On Calibration of
  Modern Neural Networks", ICML 2017), so that no expert outvotes the others by overconfidence alone.
- w_m in [0, 1]: how far the record's input of m looks like the validation data, from the squared Mahalanobis
  distance d of the encoder's pooled features to the closest class-conditional Gaussian fitted on validation
  (Lee, Lee, Lee and Shin, NeurIPS 2018; the same calibration as `evaluation.reliability`):
  w_m = sigmoid(sharpness * (t - d) / (t - d_50)), with t the validation distances' `quantile` (0.95: the
  point where the record is flagged `ood`, w = 1/2) and d_50 their median (w = sigmoid(sharpness) ~ 0.98).
  A modality far out of distribution gets w ~ 0: the record is decided as if that modality were missing.
Idea taken from dynamic fusion (Zhang et al., "Provable Dynamic Fusion for Low-Quality Multimodal Data", ICML
2023; Cao et al., "Predictive Dynamic Fusion", ICML 2024): weight each modality per record by an estimate of
its quality. Adapted: the quality estimate is not learned from the training loss (qmf's energy and PDF's
predicted confidence come from the same network that is fooled by a corrupted input, and stay confident on it)
but is a density score of the input features calibrated on held-out data, which notices inputs unlike anything
seen; the weights enter a product of calibrated experts instead of a sum of logits.
Before calibration (in training) every w_m = 1 and T_m = 1: the training loss is the cross-entropy of the
plain product of experts plus each expert's own cross-entropy. Calibration (`calibrate`) runs once after
training; its state is in buffers saved with the weights. Multiclass targets only.
Missing modality: w_m = 0 exactly and its logits are replaced by zeros (NaN-safe) before the pool; a record
with no modality present gets zero logits (uniform). The fused representation is the mean of the present
branches. The reported uncertainty of a modality is 1 - w_m (NaN where missing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.fusion.base import FUSIONS, Calibration, Decision, Fusion, FusionOutput, zero_missing
from polymodal.layers import EncoderOutput, mlp

TEMPERATURES = torch.exp(torch.linspace(-2.0, 3.0, 101))  # grid of candidate temperatures, 0.14 .. 20


class ReliabilityGate(nn.Module):
    """One modality's calibration: class means (C, D), precision (D, D), threshold, scale, temperature.

    Uncalibrated (no class means), its weight is 1 and its temperature 1.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("means", torch.zeros(0, dim))
        self.register_buffer("precision", torch.eye(dim))
        self.register_buffer("threshold", torch.tensor(0.0))
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("temperature", torch.tensor(1.0))

    def distance(self, x: Tensor) -> Tensor:
        """(B,) squared Mahalanobis distance of features (B, D) to the closest class mean."""
        diff = x[:, None, :] - self.means[None].to(x)  # (B, C, D)
        return torch.einsum("bcd,de,bce->bc", diff, self.precision.to(x), diff).amin(1)

    def forward(self, x: Tensor) -> Tensor:
        """(B,) weight in [0, 1] of features (B, D): 1 when uncalibrated."""
        if not len(self.means):
            return torch.ones_like(x[:, 0])
        return torch.sigmoid((self.threshold - self.distance(x)) / self.scale)

    def fit(self, means: Tensor, precision: Tensor, distances: Tensor, quantile: float, sharpness: float) -> None:
        """Store the Gaussian and the logistic of its validation distances (N,)."""
        self.means, self.precision = means.to(self.precision), precision.to(self.precision)
        threshold = torch.quantile(distances.double(), quantile)
        spread = (threshold - distances.double().median()).clamp_min(1e-6)
        self.threshold, self.scale = threshold.to(self.threshold), (spread / sharpness).to(self.scale)

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        means = state_dict.get(prefix + "means")
        if means is not None:  # the number of classes is known only once calibrated
            self.means = torch.zeros_like(means, device=self.means.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[arg-type]


def fit_temperature(logits: Tensor, target: Tensor) -> Tensor:
    """The temperature of the grid that minimises the mean cross-entropy of logits (N, K) / T."""
    losses = torch.stack([F.cross_entropy(logits.double() / t, target) for t in TEMPERATURES.double()])
    return TEMPERATURES[int(losses.argmin())]


def log_pool(modality_logits: Mapping[str, Tensor], weights: Mapping[str, Tensor],
             temperatures: Mapping[str, Tensor]) -> Tensor:
    """(B, K) sum over modalities of w_m (B,) * log_softmax(f_m (B, K) / T_m); weight 0 contributes nothing."""
    terms = [torch.where(w[:, None] > 0, w[:, None] * F.log_softmax(modality_logits[m] / temperatures[m], 1),
                         torch.zeros_like(modality_logits[m])) for m, w in weights.items()]
    return torch.stack(terms).sum(0)


@FUSIONS.register("reliable")
class ReliableFusion(Fusion):
    """Reliability-gated product of temperature-calibrated per-modality experts (module docstring).

    Args:
        in_dims: feature width per modality (derived).
        hidden: branch width, also the fused width.
        layers: linear layers per branch.
        dropout: dropout inside the branches.
        quantile: validation distance quantile at which a modality's weight is 1/2 (the `ood` threshold).
        sharpness: the weight is sigmoid(sharpness) at the median validation distance.
        unimodal_weight: weight of each expert's own cross-entropy.
    """

    def __init__(self, in_dims: Mapping[str, int], hidden: int = 128, layers: int = 2, dropout: float = 0.2,
                 quantile: float = 0.95, sharpness: float = 4.0, unimodal_weight: float = 1.0) -> None:
        super().__init__(in_dims)
        if not 0 < quantile < 1 or sharpness <= 0:
            raise ValueError(f"reliable fusion needs 0 < quantile < 1 and sharpness > 0, got {quantile}, {sharpness}")
        self.branches = nn.ModuleDict({m: mlp(d, hidden, hidden, layers, dropout) for m, d in self.in_dims.items()})
        self.gates = nn.ModuleDict({m: ReliabilityGate(d) for m, d in self.in_dims.items()})
        self.quantile, self.sharpness, self.unimodal_weight = quantile, sharpness, unimodal_weight
        self.out_dim = hidden

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> FusionOutput:
        clean = {m: zero_missing(features[m].pooled, present[m]) for m in self.modalities}  # each (B, D_m)
        per = {m: self.branches[m](x) for m, x in clean.items()}  # each (B, H)
        mask = torch.stack([present[m] for m in self.modalities], dim=1)  # (B, N)
        stacked = torch.stack([zero_missing(per[m], present[m]) for m in self.modalities], dim=1)  # (B, N, H)
        weights = {m: torch.where(present[m], self.gates[m](x.detach()), torch.zeros_like(x[:, 0]))
                   for m, x in clean.items()}  # each (B,), 0 where missing
        return FusionOutput(fused=stacked.sum(1) / mask.sum(1, keepdim=True).clamp_min(1), per_modality=per,
                            reliability=weights)

    def decide(self, logits: Tensor, modality_logits: Mapping[str, Tensor] | None,
               present: Mapping[str, Tensor], reliability: Mapping[str, Tensor] | None = None) -> Decision:
        if modality_logits is None:
            raise ValueError("reliable fusion needs per-modality logits from a classification head")
        w = {m: present[m].to(logits.dtype) * (1.0 if reliability is None else reliability[m])
             for m in self.modalities}  # each (B,)
        clean = {m: zero_missing(modality_logits[m], present[m]) for m in self.modalities}
        pooled = log_pool(clean, w, {m: self.gates[m].temperature for m in self.modalities})  # (B, K)
        uncertainty = {m: torch.where(present[m], 1.0 - w[m], torch.full_like(w[m], float("nan")))
                       for m in self.modalities}
        return Decision(pooled, uncertainty)

    def target_losses(self, decision: Decision, modality_logits: Mapping[str, Tensor] | None,
                      present: Mapping[str, Tensor], target: Tensor, index: Tensor) -> dict[str, Tensor]:
        if target.dtype not in (torch.int64, torch.int32) or target.dim() != 1:
            raise ValueError("reliable fusion needs a multiclass target (one class index per record)")
        logits = modality_logits or {}
        unimodal = decision.logits.new_zeros(())
        for m in self.modalities:
            ce = F.cross_entropy(zero_missing(logits[m], present[m]), target, reduction="none")  # (B,)
            ce = torch.where(present[m], ce, torch.zeros_like(ce))
            unimodal = unimodal + ce.sum() / present[m].sum().clamp_min(1)
        return {"unimodal": self.unimodal_weight * unimodal}

    def calibrate(self, validation: Calibration) -> None:
        """Fit each modality's gate on its validation distances and its temperature on its validation logits."""
        for m in self.modalities:
            if m not in validation.means or len(validation.distances[m]) < 2:
                continue  # too few validation records with m: its gate stays open
            self.gates[m].fit(validation.means[m], validation.precision[m], validation.distances[m],
                              self.quantile, self.sharpness)
            keep = validation.present[m]
            if validation.target is not None and validation.modality_logits is not None and keep.any():
                logits = validation.modality_logits[m][keep]
                gate = self.gates[m]
                gate.temperature = fit_temperature(logits, validation.target[keep]).to(gate.temperature)
