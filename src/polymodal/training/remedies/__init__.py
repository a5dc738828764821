"""Imbalance remedies, one per file, registered by the name `training.imbalance.method` takes; importing this
package fills the registry."""

from __future__ import annotations

# Registration order (and so REMEDIES.names()) follows this import order.
from polymodal.training.remedies import (  # noqa: F401  (registration)  # isort: skip
    none,
    ogm_ge,
    grad_blend,
    aux_losses,
    mmpareto,
)
from polymodal.training.remedies.base import REMEDIES, Remedy

__all__ = ["REMEDIES", "Remedy"]
