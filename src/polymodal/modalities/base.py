"""What a modality type is: one registered `Modality` holding every part the rest of the package asks about.

A definition imports only pydantic and `polymodal.schema`, so that `polymodal.config` (which builds its union of
specs from this registry) stays importable without torch. Heavy parts - the processor class, the corruption
kernels - are named by dotted path (`"package.module:attribute"`) and imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from polymodal.registry import Registry
from polymodal.schema import Component, ModalityBase

KERNELS = "polymodal.evaluation.corruptions"
FILE_FORM: Mapping[str, Any] = {"type": "string", "format": "binary"}  # a file upload in a multipart form
NUMBERS_FORM: Mapping[str, Any] = {"type": "string", "description": "JSON list of numbers"}


def kernel(name: str) -> str:
    """Dotted path of a corruption kernel in `polymodal.evaluation.corruptions`."""
    return f"{KERNELS}:{name}"


def file_schema(kind: str) -> dict[str, Any]:
    """JSON Schema of a file sent inside a JSON record."""
    return {"type": ["string", "null"], "contentEncoding": "base64", "description": f"{kind}: base64 or data URL"}


def resolve(path: str) -> Any:
    """The object a dotted path `"package.module:attribute"` names."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class CorruptionPart:
    """One corruption of the raw signal: `levels[s - 1]` is the parameter of the kernel `fn` at severity s."""

    name: str
    fn: str  # dotted path of the kernel, (raw, level, rng, stats) -> corrupted raw
    levels: tuple[float, float, float, float, float]


@dataclass(frozen=True)
class ServerInput:
    """How the HTTP server receives one request field.

    `value` says how a JSON value is checked and converted: file (base64 string, data URL or upload -> bytes),
    text (a string), number, category (a string), numbers (a JSON list). `schema` is the field's JSON Schema in a
    JSON record, `form` in a multipart form (default: `schema`).
    """

    value: Literal["file", "text", "number", "category", "numbers"]
    schema: Mapping[str, Any]
    form: Mapping[str, Any] | None = None

    def form_schema(self) -> dict[str, Any]:
        return dict(self.form if self.form is not None else self.schema)


@dataclass(frozen=True)
class Columns:
    """A modality read from several request fields: one per column of the spec's `numeric` and `categorical`."""

    numeric: ServerInput
    categorical: ServerInput


@dataclass(frozen=True)
class Preprocess:
    """How the standalone `preprocess.py` of an export reads the modality: its functions `reader` and
    `reader_blank`, and the key that has a time axis (padded, with a mask), if any."""

    reader: str
    time_axis: str | None = None


@dataclass(frozen=True)
class Unsupported:
    """A part a modality type does not offer, with the reason (shown to whoever asks for it)."""

    reason: str


@dataclass(frozen=True)
class Modality:
    """One modality type and every part the package asks it for.

    Args:
        name: the type as written in a config (`type: image`); the spec's `type` Literal is this name.
        spec: its config spec class (a `ModalityBase` subclass).
        processor: dotted path of its `Processor` class (raw value -> arrays -> tensors).
        encoder: the default encoder (name and options) when a config names none.
        corruptions: corruptions of its raw signal, for robustness curves (or why there are none).
        server: how the HTTP server receives it (one field, or one per column).
        describe: the export manifest's plain-language preprocessing, `describe(spec, state)` where `state` names
            the fitted state (`processors.json modalities.<m>`).
        preprocess: how the export's standalone preprocessing handles it, or why it cannot.
        stream: how a raw bytes value (a WebDataset member other than json/txt/npy) reaches the processor: as the
            file's bytes, or decoded as UTF-8 text.
        extensions: file name endings by which `polymodal fit` takes a column of paths for this type (file types).
    """

    name: str
    spec: type[ModalityBase]
    processor: str
    encoder: Component
    corruptions: tuple[CorruptionPart, ...] | Unsupported
    server: ServerInput | Columns
    describe: Callable[[Any, str], str]
    preprocess: Preprocess | Unsupported
    stream: Literal["file", "text"] = "file"
    extensions: tuple[str, ...] = ()

    def processor_class(self) -> Any:
        return resolve(self.processor)

    def corruption_parts(self) -> tuple[CorruptionPart, ...]:
        return () if isinstance(self.corruptions, Unsupported) else self.corruptions


MODALITIES: Registry[Modality] = Registry("modality type")


def register(definition: Modality) -> Modality:
    """Add a modality type to the registry (one line at the end of its file)."""
    MODALITIES.register(definition.name)(lambda: definition)
    return definition


def modality(name: str) -> Modality:
    """The registered modality type `name` (KeyError listing the registered ones if unknown)."""
    return MODALITIES.get(name)()


def modality_types() -> list[str]:
    return MODALITIES.names()
