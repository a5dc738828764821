"""Fusion methods, one per file, registered by name; importing this package fills the registry."""

from __future__ import annotations

# Registration order (and so FUSIONS.names()) follows this import order; keep it, not alphabetical.
from polymodal.fusion import (  # noqa: F401  (registration)  # isort: skip
    concat,
    late,
    tensor,
    low_rank,
    gated,
    film,
    bilinear,
    multiplicative,
    attention,
    transformer,
    cross_attention,
    bottleneck,
    poe,
    tmc,
    qmf,
    reliable,
)
from polymodal.fusion.base import FUSIONS, Decision, Fusion, FusionOutput

__all__ = ["FUSIONS", "Decision", "Fusion", "FusionOutput"]
