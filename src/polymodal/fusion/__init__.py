"""Fusion methods, one per file, registered by name; importing this package fills the registry."""

from __future__ import annotations

from polymodal.fusion import concat, late  # noqa: F401  (registration)
from polymodal.fusion.base import FUSIONS, Fusion, FusionOutput

__all__ = ["FUSIONS", "Fusion", "FusionOutput"]
