"""Objective contract: a scalar loss from the model, its batch and its outputs, added to any task loss.

An objective is part of the model (its projections and decoders are saved with the weights). Constructors take
the derived widths `in_dims` (pooled encoder width per modality) and `fused_dim` plus keyword options; the
trainer adds `weight * objective(model, batch, out)` to the task loss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import combinations
from typing import TYPE_CHECKING

from torch import Tensor, nn

from polymodal.registry import Registry

if TYPE_CHECKING:
    from polymodal.data.batch import Batch
    from polymodal.output import Output


class Objective(nn.Module):
    """Base class: `forward(model, batch, out)` returns a scalar loss.

    Args:
        in_dims: pooled encoder width per modality (derived).
        fused_dim: width of the fused representation (derived).
    """

    def __init__(self, in_dims: Mapping[str, int], fused_dim: int) -> None:
        super().__init__()
        self.in_dims = dict(in_dims)
        self.fused_dim = fused_dim

    @property
    def modalities(self) -> list[str]:
        return list(self.in_dims)

    def pairs(self) -> list[tuple[str, str]]:
        """Every unordered pair of modalities."""
        return list(combinations(self.in_dims, 2))

    def zero(self) -> Tensor:
        """A zero loss still attached to this objective's parameters (so backward works on any batch)."""
        return sum(p.sum() for p in self.parameters()) * 0.0  # type: ignore[return-value]

    def forward(self, model: Callable[[Batch], Output], batch: Batch, out: Output) -> Tensor:
        raise NotImplementedError  # pragma: no cover

    def after_step(self) -> None:
        """Called after each optimizer step: where an objective keeps its parameters in range (none here)."""


OBJECTIVES: Registry[Objective] = Registry("objective")
