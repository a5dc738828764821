"""Config choices and the registries they name agree (one source of truth, checked here)."""

from __future__ import annotations

from typing import get_args

from polymodal.config import DataConfig, TaskName
from polymodal.data.formats import FORMATS
from polymodal.datasets import DATASETS
from polymodal.tasks import TASKS


def literal_values(model: type, field: str) -> set[str]:
    annotation = model.model_fields[field].annotation  # type: ignore[attr-defined]
    return {v for arg in get_args(annotation) or (annotation,) for v in (get_args(arg) or (arg,)) if isinstance(v, str)}


def test_task_names_are_the_registered_tasks() -> None:
    assert set(get_args(TaskName)) == set(TASKS.names())


def test_every_registered_data_format_is_a_config_choice() -> None:
    assert set(FORMATS.names()) <= literal_values(DataConfig, "format")


def test_builtin_choices_are_the_built_in_datasets() -> None:
    assert literal_values(DataConfig, "builtin") == set(DATASETS)
