"""Tabular: numeric and categorical columns of the table, one modality."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from polymodal.modalities.base import Columns, CorruptionPart, Modality, Preprocess, ServerInput, kernel, register
from polymodal.schema import Component, ModalityBase


class TabularSpec(ModalityBase):
    type: Literal["tabular"]
    numeric: list[str] = []
    categorical: list[str] = []

    @model_validator(mode="after")
    def _some_columns(self) -> TabularSpec:
        if not self.numeric and not self.categorical:
            raise ValueError("a tabular modality needs at least one column in 'numeric' or 'categorical'")
        return self


def describe(spec: TabularSpec, state: str) -> str:
    k = len(spec.numeric)
    return (f"numeric (B, {2 * k}) float32: for the columns {list(spec.numeric)}, (value - mean) / std (0 where "
            f"missing), followed by one 1/0 missing indicator per column (mean/std: {state}); "
            f"categorical (B, {len(spec.categorical)}) int64: for the columns {list(spec.categorical)}, 1 + the "
            f"value's position in the sorted list {state}.categories[column], 0 if unknown or missing")


TABULAR = register(Modality(
    name="tabular",
    spec=TabularSpec,
    processor="polymodal.processors.tabular:TabularProcessor",
    encoder=Component(name="tabular_mlp"),
    corruptions=(
        CorruptionPart("gaussian_noise", kernel("tabular_noise"), (0.10, 0.25, 0.50, 0.75, 1.00)),
        CorruptionPart("feature_dropout", kernel("tabular_dropout"), (0.10, 0.20, 0.30, 0.45, 0.60)),
    ),
    server=Columns(numeric=ServerInput("number", {"type": ["number", "null"]}),
                   categorical=ServerInput("category", {"type": ["string", "null"]})),
    describe=describe,
    preprocess=Preprocess("tabular"),
))
