"""Contract of the modality registry: every registered type provides every part, and the rest of the package (the
config's union of specs, processors, encoders, corruptions, server, export) asks the registry, not a table."""

from __future__ import annotations

import typing
from typing import Any

import pytest

from polymodal.config import ModalitySpec, parse_config
from polymodal.encoders import ENCODERS
from polymodal.evaluation.corruptions import CORRUPTIONS
from polymodal.export import preprocess
from polymodal.modalities import (
    MODALITIES,
    Columns,
    CorruptionPart,
    Modality,
    Preprocess,
    ServerInput,
    Unsupported,
    modality,
    modality_types,
)
from polymodal.processors import Processor, build_processor
from polymodal.schema import ModalityBase

TYPES = modality_types()
REQUIRED_KEYS: dict[str, dict[str, Any]] = {"tabular": {"numeric": ["x"], "categorical": ["c"]}}  # beyond `type`


def spec_of(name: str) -> Any:
    return modality(name).spec.model_validate({"type": name, **REQUIRED_KEYS.get(name, {})})


def test_the_known_modality_types_are_registered() -> None:
    assert set(TYPES) == {"image", "text", "audio", "tabular", "vector", "sequence", "video"}


def test_config_union_of_specs_is_the_registry() -> None:
    union = typing.get_args(typing.get_args(ModalitySpec)[0])
    assert set(union) == {modality(t).spec for t in TYPES}


@pytest.mark.parametrize("name", TYPES)
def test_spec_type_literal_is_the_registered_name(name: str) -> None:
    spec = modality(name).spec
    assert issubclass(spec, ModalityBase)
    assert typing.get_args(spec.model_fields["type"].annotation) == (name,)
    config = parse_config({"data": {"source": "t.csv"}, "modalities": {"m": {"type": name, **REQUIRED_KEYS.get(name, {})}},
                           "target": {"field": "y", "task": "binary"}})
    assert isinstance(config.modalities["m"], spec)


@pytest.mark.parametrize("name", TYPES)
def test_processor_is_a_processor_of_this_type(name: str) -> None:
    cls = modality(name).processor_class()
    assert issubclass(cls, Processor) and cls.kind == name
    proc = build_processor(spec_of(name), "field")
    assert isinstance(proc, cls) and proc.blank()


@pytest.mark.parametrize("name", TYPES)
def test_default_encoder_is_registered_and_takes_this_type(name: str) -> None:
    enc = modality(name).encoder
    assert enc.name in ENCODERS and name in ENCODERS.get(enc.name).modalities  # type: ignore[attr-defined]
    ENCODERS.check_options(enc.name, enc.options, frozenset(ENCODERS.get(enc.name).derived))  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", TYPES)
def test_corruptions_resolve_to_kernels_with_five_levels(name: str) -> None:
    parts = modality(name).corruptions
    if isinstance(parts, Unsupported):
        assert parts.reason and name not in CORRUPTIONS
        return
    assert parts and all(isinstance(p, CorruptionPart) and len(p.levels) == 5 for p in parts)
    assert len({p.name for p in parts}) == len(parts)
    assert {p.name: p.levels for p in parts} == {c.name: c.levels for c in CORRUPTIONS[name].values()}
    assert all(callable(c.fn) for c in CORRUPTIONS[name].values())


@pytest.mark.parametrize("name", TYPES)
def test_server_input_has_a_kind_and_json_schemas(name: str) -> None:
    how = modality(name).server
    assert isinstance(how, (ServerInput, Columns))
    for part in (how.numeric, how.categorical) if isinstance(how, Columns) else (how,):
        assert part.value in {"file", "text", "number", "category", "numbers"}
        for schema in (dict(part.schema), part.form_schema()):
            assert isinstance(schema.get("type"), (str, list)), schema


@pytest.mark.parametrize("name", TYPES)
def test_export_describes_it_and_preprocess_handles_it_or_says_why_not(name: str) -> None:
    definition: Modality = modality(name)
    text = definition.describe(spec_of(name), "processors.json modalities.m")
    assert isinstance(text, str) and "(B" in text
    plan = definition.preprocess
    if isinstance(plan, Unsupported):
        assert plan.reason
        return
    assert isinstance(plan, Preprocess)
    read, blank = preprocess.readers(plan.reader)
    proc = build_processor(spec_of(name), "field")
    assert plan.time_axis is None or plan.time_axis in proc.blank()
    assert proc.ragged == (plan.time_axis is not None)


@pytest.mark.parametrize("name", TYPES)
def test_stream_bytes_and_file_endings_are_declared(name: str) -> None:
    definition = modality(name)
    assert definition.stream in {"file", "text"}
    assert all(e.startswith(".") and e == e.lower() for e in definition.extensions)
    is_file = isinstance(definition.server, ServerInput) and definition.server.value == "file"
    assert bool(definition.extensions) == is_file  # a type sent as a file is recognised by its files' endings


def test_preprocess_refuses_a_name_that_is_not_a_reader() -> None:
    with pytest.raises(NotImplementedError, match="no reader"):
        preprocess.readers("source")


def test_registering_a_type_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        MODALITIES.register("image")(lambda: modality("image"))
