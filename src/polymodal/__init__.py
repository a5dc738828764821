"""polymodal: multimodal learning with honest evaluation.

The public API. Names load on first use (module `__getattr__`), so `import polymodal` imports no torch:

    predictor = polymodal.fit("config.yaml")          # or a Config, or fit(table, target="label")
    predictor.predict("new.csv")
    polymodal.list_fusions(); polymodal.FUSIONS.register("mine")(MyFusion)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polymodal.api import fit, list_encoders, list_fusions, list_tasks
    from polymodal.config import Config
    from polymodal.encoders import ENCODERS
    from polymodal.factory import load_config
    from polymodal.fusion import FUSIONS
    from polymodal.objectives import OBJECTIVES
    from polymodal.predictor import Predictor
    from polymodal.tasks import TASKS

_WHERE = {
    "fit": "polymodal.api",
    "list_fusions": "polymodal.api",
    "list_encoders": "polymodal.api",
    "list_tasks": "polymodal.api",
    "load_config": "polymodal.factory",
    "Config": "polymodal.config",
    "Predictor": "polymodal.predictor",
    "ENCODERS": "polymodal.encoders",
    "FUSIONS": "polymodal.fusion",
    "TASKS": "polymodal.tasks",
    "OBJECTIVES": "polymodal.objectives",
}

__all__ = ["ENCODERS", "FUSIONS", "OBJECTIVES", "TASKS", "Config", "Predictor", "fit", "list_encoders",
           "list_fusions", "list_tasks", "load_config"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'polymodal' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
