"""`tmc`: Trusted Multi-View Classification (Han, Zhang, Fu and Zhou, ICLR 2021).

Each modality m has its own MLP branch h_m; the task head turns it into logits f_m, and the evidence
e_m = softplus(f_m) >= 0 parameterises a Dirichlet alpha_m = e_m + 1 of strength S_m = sum_k alpha_mk, with
belief masses b_m = e_m / S_m and uncertainty mass u_m = K / S_m (subjective logic, the paper's eq. 1-2).
Opinions are combined two at a time with the reduced Dempster-Shafer rule (eq. 3-4): with the conflict
C = sum_{i != j} b1_i b2_j, b = (b1 b2 + b1 u2 + b2 u1) / (1 - C) and u = u1 u2 / (1 - C); the combined
Dirichlet has S = K / u and alpha = b S + 1. The model's logits are log alpha, so their softmax is the expected
class probability alpha / S.
Loss (eq. 5-8), on every modality's Dirichlet and on the combined one: the adjusted cross-entropy
sum_k y_k (digamma(S) - digamma(alpha_k)) plus lambda_t KL(Dir(alpha~) || Dir(1)) with alpha~ = y + (1 - y) alpha
(the misleading evidence), lambda_t = min(1, t / anneal_steps).
Adapted: t counts training steps (the paper counts epochs); the per-modality classifiers share the model's
task head over separate branches; the trainer also adds the task's cross-entropy on log alpha.
Missing modality: its opinion is replaced by the vacuous one (b = 0, u = 1), the identity of the reduced rule,
so its content has no influence; its own loss term leaves those records out; a record with no modality present
gets alpha = 1 (uniform). The fused representation is the mean of the present branches.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.layers import EncoderOutput, mlp
from polymodal.fusion.base import FUSIONS, Decision, Fusion, FusionOutput, zero_missing


def opinion(evidence: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
    """Belief masses (B, K) and uncertainty mass (B, 1) of evidence (B, K); vacuous where not present."""
    strength = evidence.sum(1, keepdim=True) + evidence.shape[1]  # (B, 1), S = sum(e + 1)
    belief, u = evidence / strength, evidence.shape[1] / strength
    keep = present[:, None]
    return torch.where(keep, belief, torch.zeros_like(belief)), torch.where(keep, u, torch.ones_like(u))


def combine(b1: Tensor, u1: Tensor, b2: Tensor, u2: Tensor) -> tuple[Tensor, Tensor]:
    """Reduced Dempster-Shafer combination of two opinions (b (B, K), u (B, 1))."""
    conflict = b1.sum(1, keepdim=True) * b2.sum(1, keepdim=True) - (b1 * b2).sum(1, keepdim=True)  # (B, 1)
    scale = (1.0 - conflict).clamp_min(1e-8)
    return (b1 * b2 + b1 * u2 + b2 * u1) / scale, u1 * u2 / scale


def dirichlet_loss(alpha: Tensor, target: Tensor, kl_weight: float) -> Tensor:
    """Per-record (B,) adjusted cross-entropy + kl_weight * KL(Dir(alpha~) || Dir(1)) of alpha (B, K)."""
    y = F.one_hot(target, alpha.shape[1]).to(alpha.dtype)  # (B, K)
    strength = alpha.sum(1, keepdim=True)
    ce = (y * (torch.digamma(strength) - torch.digamma(alpha))).sum(1)
    return ce + kl_weight * kl_to_uniform(y + (1 - y) * alpha)


def kl_to_uniform(alpha: Tensor) -> Tensor:
    """KL(Dir(alpha) || Dir(1, ..., 1)) per record (B,) of alpha (B, K)."""
    strength = alpha.sum(1)
    k = torch.tensor(float(alpha.shape[1]), dtype=alpha.dtype, device=alpha.device)
    log_norm = torch.lgamma(strength) - torch.lgamma(k) - torch.lgamma(alpha).sum(1)
    return log_norm + ((alpha - 1) * (torch.digamma(alpha) - torch.digamma(strength)[:, None])).sum(1)


@FUSIONS.register("tmc")
class TMCFusion(Fusion):
    """Per-modality Dirichlet evidence combined with the reduced Dempster-Shafer rule.

    Args:
        in_dims: feature width per modality (derived).
        hidden: branch width, also the fused width.
        layers: linear layers per branch.
        dropout: dropout inside the branches.
        anneal_steps: training steps over which the KL weight rises linearly from 0 to 1.
    """

    def __init__(self, in_dims: Mapping[str, int], hidden: int = 128, layers: int = 2, dropout: float = 0.2,
                 anneal_steps: int = 200) -> None:
        super().__init__(in_dims)
        self.branches = nn.ModuleDict({m: mlp(d, hidden, hidden, layers, dropout) for m, d in self.in_dims.items()})
        self.anneal_steps = anneal_steps
        self.steps = 0
        self.out_dim = hidden

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> FusionOutput:
        per = {m: self.branches[m](zero_missing(features[m].pooled, present[m])) for m in self.modalities}
        mask = torch.stack([present[m] for m in self.modalities], dim=1)  # (B, N)
        stacked = torch.stack([zero_missing(per[m], present[m]) for m in self.modalities], dim=1)  # (B, N, H)
        fused = stacked.sum(1) / mask.sum(1, keepdim=True).clamp_min(1)  # (B, H)
        return FusionOutput(fused=fused, per_modality=per)

    def alphas(self, modality_logits: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {m: F.softplus(modality_logits[m]) + 1.0 for m in self.modalities}  # each (B, K)

    def decide(self, logits: Tensor, modality_logits: Mapping[str, Tensor] | None,
               present: Mapping[str, Tensor], reliability: Mapping[str, Tensor] | None = None) -> Decision:
        if modality_logits is None:
            raise ValueError("tmc needs per-modality logits from a classification head")
        alphas = self.alphas(modality_logits)
        b, u = torch.zeros_like(logits), torch.ones_like(logits[:, :1])  # the vacuous opinion
        uncertainty = {}
        for m in self.modalities:
            bm, um = opinion(alphas[m] - 1, present[m])
            b, u = combine(b, u, bm, um)
            uncertainty[m] = torch.where(present[m], um[:, 0], torch.full_like(um[:, 0], float("nan")))
        alpha = b * (b.shape[1] / u) + 1.0  # (B, K), S = K / u
        return Decision(torch.log(alpha), uncertainty)

    def target_losses(self, decision: Decision, modality_logits: Mapping[str, Tensor] | None,
                      present: Mapping[str, Tensor], target: Tensor, index: Tensor) -> dict[str, Tensor]:
        if target.dtype not in (torch.int64, torch.int32) or target.dim() != 1:
            raise ValueError("tmc fusion needs a multiclass target (one class index per record)")
        self.steps += 1
        kl_weight = min(1.0, self.steps / max(1, self.anneal_steps))
        losses = dirichlet_loss(decision.logits.exp(), target, kl_weight).mean()
        for m, alpha in self.alphas(modality_logits or {}).items():
            per_record = dirichlet_loss(alpha, target, kl_weight)  # (B,)
            losses = losses + torch.where(present[m], per_record, torch.zeros_like(per_record)).mean()
        return {"evidential": losses}
