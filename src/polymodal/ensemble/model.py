"""`EnsembleModel`: members' probabilities averaged with fixed weights, returned as the task's logits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.data.batch import Batch
from polymodal.model import MultimodalModel
from polymodal.output import Output


@dataclass(frozen=True)
class Slot:
    """One member's place in the ensemble: its kind and which ensemble modality feeds each of its modalities."""

    kind: str
    modalities: dict[str, str]  # member modality -> ensemble modality


def to_probability(logits: Tensor, task: str) -> Tensor:
    """Task logits -> what is averaged: class probabilities, per-label probabilities, or values."""
    if task == "multiclass":
        return logits.float().softmax(dim=1)
    if task in ("binary", "multilabel"):
        return torch.sigmoid(logits.float())
    return logits.float()


def from_probability(p: Tensor, task: str) -> Tensor:
    """The inverse of `to_probability`, so that the task's own predict/proba/metrics apply unchanged."""
    if task == "multiclass":
        return p.clamp_min(1e-7).log()
    if task in ("binary", "multilabel"):
        p = p.clamp(1e-7, 1 - 1e-7)
        return (p / (1 - p)).log()
    return p


def member_batch(batch: Batch, modalities: Mapping[str, str]) -> Batch:
    """The batch as one member sees it: its own modality names (inputs, or a frozen encoder's cached outputs),
    nothing else."""
    return Batch({m: batch.inputs[e] for m, e in modalities.items() if e in batch.inputs},
                 {m: batch.present[e] for m, e in modalities.items()}, batch.target, batch.index,
                 {m: batch.features[e] for m, e in modalities.items() if e in batch.features})


class EnsembleModel(nn.Module):
    """A weighted average of members' probabilities.

    Args:
        members: modules by name: a `MultimodalModel` (its Output's logits are used) or a classical module
            returning logits (B, K).
        slots: per member, its kind and modality mapping.
        weights: per member, a non-negative weight (normalised to sum 1).
        task: the task name, which says how logits become probabilities.
    """

    contrastive = None  # no shared embedding space

    def __init__(self, members: Mapping[str, nn.Module], slots: Mapping[str, Slot], weights: Mapping[str, float],
                 task: str) -> None:
        super().__init__()
        self.members = nn.ModuleDict(dict(members))
        self.slots = dict(slots)
        total = sum(weights[m] for m in members)
        self.weights = nn.Parameter(torch.tensor([weights[m] / total for m in members]), requires_grad=False)
        self.task = task

    @property
    def modalities(self) -> list[str]:
        return sorted({e for s in self.slots.values() for e in s.modalities.values()})

    def shared_encoders(self) -> dict[str, Any]:
        """Per ensemble modality read only by polymodal members whose encoders for it hold equal weights, that
        encoder: its outputs can stand in for the inputs of every member (the feature cache)."""
        readers: dict[str, list[Any]] = {}
        for name, member in self.members.items():
            for m, e in self.slots[name].modalities.items():
                readers.setdefault(e, []).append(member.encoders[m] if isinstance(member, MultimodalModel) else None)
        return {e: encs[0] for e, encs in readers.items()
                if all(enc is not None and _same_weights(enc, encs[0]) for enc in encs)}

    def member_logits(self, name: str, batch: Batch) -> Tensor:
        out = self.members[name](member_batch(batch, self.slots[name].modalities))
        return out.logits if isinstance(self.members[name], MultimodalModel) else out  # (B, K)

    def forward(self, batch: Batch) -> Output:
        p = sum(w * to_probability(self.member_logits(m, batch), self.task)
                for m, w in zip(self.members, self.weights))  # (B, K)
        assert isinstance(p, Tensor)
        return Output(logits=from_probability(p, self.task), fused=p, features={})


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
