"""What `polymodal.fit`, `polymodal.list_*` do; `polymodal/__init__.py` loads this module on first use."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polymodal.config import Config

if TYPE_CHECKING:
    from polymodal.predictor import Predictor


def fit(config_or_table: Any, target: str | None = None, **options: Any) -> Predictor:
    """Train and return a Predictor of the finished run.

    `fit(config)` trains exactly that config: a `Config`, a mapping, or the path of a YAML file.
    `fit(table, target="label", **options)` is the zero-config path over a table (a DataFrame or the path of a
    csv/parquet/jsonl file): it picks modalities, encoders and fusion itself (`polymodal.apps.fit.fit_table`).
    """
    if target is not None:
        return _fit_table(config_or_table, target, options)
    if options:
        raise TypeError(f"fit(config) takes no options ({', '.join(options)}); set them in the config, or pass "
                        "target= to fit a table")
    return fit_config(as_config(config_or_table))


def as_config(value: Any) -> Config:
    """A Config from a Config, a mapping, or a YAML path (validated against the registries)."""
    from polymodal.factory import check_components, load_config, parse_config

    if isinstance(value, Config):
        check_components(value)
        return value
    if isinstance(value, dict):
        return parse_config(value)
    if isinstance(value, (str, Path)):
        return load_config(value)
    raise TypeError(f"fit() takes a Config, a mapping or a YAML path, or a table with target=...; got "
                    f"{type(value).__name__}")


def fit_config(config: Config) -> Predictor:
    from polymodal.predictor import Predictor
    from polymodal.training.fit import train

    return Predictor.load(train(config).run_dir)


def _fit_table(table: Any, target: str, options: dict[str, Any]) -> Predictor:
    try:
        module = importlib.import_module("polymodal.apps.fit")
        fit_table = module.fit_table
    except (ImportError, AttributeError) as err:
        raise ImportError(f"polymodal.fit(table, target=...) needs polymodal.apps.fit.fit_table, which this "
                          f"installation does not have ({err}); pass a config instead") from None
    return fit_table(table, target=target, **options)


def list_fusions() -> list[str]:
    from polymodal.fusion import FUSIONS

    return FUSIONS.names()


def list_encoders(modality_type: str | None = None) -> list[str]:
    """Registered encoders; with `modality_type`, only those that take that kind of input."""
    from polymodal.encoders import ENCODERS

    return [n for n in ENCODERS.names() if modality_type is None or modality_type in ENCODERS.get(n).modalities]


def list_tasks() -> list[str]:
    from polymodal.tasks import TASKS

    return TASKS.names()
