"""Objectives added to any task loss, one per file, registered by name; importing this package fills the registry."""

from __future__ import annotations

from polymodal.objectives import contrastive, dcca, reconstruction  # noqa: F401  (registration)
from polymodal.objectives.base import OBJECTIVES, Objective
from polymodal.objectives.contrastive import Contrastive

__all__ = ["OBJECTIVES", "Contrastive", "Objective"]
