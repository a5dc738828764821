"""`qmf`: Quality-aware Multimodal Fusion (Zhang, Wu, Zhang, Hu, Fu, Zhou and Peng, "Provable Dynamic Fusion
for Low-Quality Multimodal Data", ICML 2023).

Each modality m has its own MLP branch; the task head turns it into logits f_m. Its energy
E_m = -log sum_k exp(f_mk) is an uncertainty estimate (low energy = confident), and the record's weight for the
modality is w_m = -E_m / temperature; the fused logits are sum_m w_m f_m (dynamic late fusion; the weights are
detached there, as in the authors' text-image code, so they are trained by the unimodal losses and the
regulariser). Training adds, for every modality, the unimodal cross-entropy of f_m and lambda times the ranking
regulariser of Confidence-aware Learning (Moon et al., ICML 2020) that the paper uses to make w_m track sample
quality: each record i is paired with the next one j in the batch; with c_i the record's cumulative unimodal
training loss so far (min-max normalised over the records seen), a record with the lower historical loss should
get the higher weight by at least the gap: max(0, -sign(c_j - c_i) (w_i - w_j) + |c_i - c_j|).
Missing modality: its weight is exactly 0 and its logits are replaced by zeros (NaN-safe) before the sum; pairs
where either record lacks the modality and records without it are left out of that modality's losses, and
its history is not updated for them. A record with no modality present gets zero logits. The fused
representation is the mean of the present branches. The loss history lives in memory, not in the weights.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.layers import EncoderOutput, mlp
from polymodal.fusion.base import FUSIONS, Decision, Fusion, FusionOutput, zero_missing


class LossHistory:
    """Cumulative training loss per record (by dataset index) of one modality."""

    def __init__(self) -> None:
        self.total = torch.zeros(0, dtype=torch.float64)
        self.seen = torch.zeros(0, dtype=torch.bool)

    def update(self, index: Tensor, loss: Tensor) -> None:
        index = index.cpu()
        grow = int(index.max()) + 1 - len(self.total) if len(index) else 0
        if grow > 0:
            self.total = torch.cat([self.total, torch.zeros(grow, dtype=torch.float64)])
            self.seen = torch.cat([self.seen, torch.zeros(grow, dtype=torch.bool)])
        self.total.index_add_(0, index, loss.detach().cpu().double())
        self.seen[index] = True

    def normalised(self, index: Tensor) -> Tensor:
        """(B,) cumulative losses of `index` scaled to [0, 1] over every record seen (0 for unseen ones)."""
        if not self.seen.any():
            return torch.zeros(len(index), dtype=torch.float64)
        seen = self.total[self.seen]
        lo, hi = seen.min(), seen.max()
        idx = index.cpu().clamp_max(len(self.total) - 1)
        value = torch.where(index.cpu() < len(self.total), self.total[idx], lo)
        return ((value - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)


def rank_regulariser(weight: Tensor, history: Tensor, valid: Tensor) -> Tensor:
    """Mean over valid pairs (i, i+1) of max(0, -sign(c_j - c_i) (w_i - w_j) + |c_i - c_j|).

    weight (B,) the modality's weights, history (B,) normalised historical losses, valid (B,) pair mask.
    """
    w_j, c_j = weight.roll(-1), history.roll(-1)
    order = torch.sign(c_j - history)  # +1: record i has the lower loss, so it should weigh more
    pair = (-order * (weight - w_j) + (history - c_j).abs()).clamp_min(0)  # (B,)
    pair = torch.where(valid & (order != 0), pair, torch.zeros_like(pair))
    return pair.sum() / valid.sum().clamp_min(1)


@FUSIONS.register("qmf")
class QMFFusion(Fusion):
    """Energy-weighted late fusion of per-modality classifiers with a ranking regulariser.

    Args:
        in_dims: feature width per modality (derived).
        hidden: branch width, also the fused width.
        layers: linear layers per branch.
        dropout: dropout inside the branches.
        temperature: w_m = -E_m / temperature (the authors use 10).
        lam: weight of the ranking regulariser (the authors use 0.1).
        unimodal_weight: weight of each modality's own cross-entropy (the paper: 1).
    """

    def __init__(self, in_dims: Mapping[str, int], hidden: int = 128, layers: int = 2, dropout: float = 0.2,
                 temperature: float = 10.0, lam: float = 0.1, unimodal_weight: float = 1.0) -> None:
        super().__init__(in_dims)
        self.branches = nn.ModuleDict({m: mlp(d, hidden, hidden, layers, dropout) for m, d in self.in_dims.items()})
        self.temperature, self.lam, self.unimodal_weight = temperature, lam, unimodal_weight
        self.history = {m: LossHistory() for m in self.in_dims}
        self.out_dim = hidden

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> FusionOutput:
        per = {m: self.branches[m](zero_missing(features[m].pooled, present[m])) for m in self.modalities}
        mask = torch.stack([present[m] for m in self.modalities], dim=1)  # (B, N)
        stacked = torch.stack([zero_missing(per[m], present[m]) for m in self.modalities], dim=1)  # (B, N, H)
        return FusionOutput(fused=stacked.sum(1) / mask.sum(1, keepdim=True).clamp_min(1), per_modality=per)

    def weights(self, modality_logits: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """w_m (B,) = -E_m / temperature = logsumexp(f_m) / temperature, 0 where missing."""
        return {m: torch.where(present[m], torch.logsumexp(modality_logits[m], 1) / self.temperature,
                               torch.zeros_like(modality_logits[m][:, 0])) for m in self.modalities}

    def decide(self, logits: Tensor, modality_logits: Mapping[str, Tensor] | None,
               present: Mapping[str, Tensor], reliability: Mapping[str, Tensor] | None = None) -> Decision:
        if modality_logits is None:
            raise ValueError("qmf needs per-modality logits from a classification head")
        w = self.weights(modality_logits, present)
        fused = sum(w[m].detach()[:, None] * zero_missing(modality_logits[m], present[m])
                    for m in self.modalities)  # (B, K)
        energy = {m: torch.where(present[m], -w[m] * self.temperature, torch.full_like(w[m], float("nan")))
                  for m in self.modalities}
        return Decision(fused, energy)  # type: ignore[arg-type]

    def target_losses(self, decision: Decision, modality_logits: Mapping[str, Tensor] | None,
                      present: Mapping[str, Tensor], target: Tensor, index: Tensor) -> dict[str, Tensor]:
        if target.dtype not in (torch.int64, torch.int32) or target.dim() != 1:
            raise ValueError("qmf fusion needs a multiclass target (one class index per record)")
        logits = modality_logits or {}
        w = self.weights(logits, present)
        known = index.numel() == target.numel()  # records' dataset positions, needed by the history
        unimodal, rank = decision.logits.new_zeros(()), decision.logits.new_zeros(())
        for m in self.modalities:
            ce = F.cross_entropy(zero_missing(logits[m], present[m]), target, reduction="none")  # (B,)
            ce = torch.where(present[m], ce, torch.zeros_like(ce))
            unimodal = unimodal + ce.sum() / present[m].sum().clamp_min(1)
            if not known:
                continue
            history = self.history[m].normalised(index).to(ce)
            rank = rank + rank_regulariser(w[m], history, present[m] & present[m].roll(-1))
            self.history[m].update(index[present[m]], ce[present[m]])
        return {"unimodal": self.unimodal_weight * unimodal, "rank": self.lam * rank}
