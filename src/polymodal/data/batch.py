"""The Batch contract: tensors by modality name, a presence mask per modality, padding masks."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor


@dataclass
class Batch:
    """A collated batch.

    Attributes:
        inputs: per modality, named tensors from its processor, e.g. `{"image": {"pixels": (B, C, H, W)}}`;
            sequence modalities carry `mask` (B, T), True where a step is real (not padding).
        present: per modality, (B,) bool; False means the modality is missing for that record.
        target: (B,) class indices, (B, L) multilabel 0/1 or (B, K) regression values; None at inference.
        index: (B,) position of each record in its dataset.
        features: per modality whose encoder is frozen and cached, its stored outputs in place of inputs:
            `pooled` (B, D) and, where the encoder has them, `tokens` (B, T, D) + `mask` (B, T).
    """

    inputs: dict[str, dict[str, Tensor]]
    present: dict[str, Tensor]
    target: Tensor | None = None
    index: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    features: dict[str, dict[str, Tensor]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.index.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            inputs={m: {k: v.to(device) for k, v in d.items()} for m, d in self.inputs.items()},
            present={m: p.to(device) for m, p in self.present.items()},
            target=None if self.target is None else self.target.to(device),
            index=self.index.to(device),
            features={m: {k: v.to(device) for k, v in d.items()} for m, d in self.features.items()},
        )

    def without(self, modalities: set[str] | frozenset[str]) -> Batch:
        """A copy in which the named modalities are marked missing for every record."""
        present = {m: (torch.zeros_like(p) if m in modalities else p) for m, p in self.present.items()}
        return replace(self, present=present)
