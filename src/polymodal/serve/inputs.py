"""Request records -> decoded arrays, through the run's own processors (the path `Predictor` and training take).

A record maps input fields to values: text and numbers inline, images and audio as base64 strings (optionally
data URLs) or uploaded files' bytes, vectors and sequences as lists of numbers. A field that is absent, null or
empty marks its modality missing, as an empty cell does in a table. Nothing in a record is read as a file path.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.config import Config
from polymodal.data.dataset import Decoded
from polymodal.errors import RecordError
from polymodal.modalities import Columns, ServerInput, modality
from polymodal.processors import Processor
from polymodal.processors.base import Arrays, is_empty

_FLOAT32_MAX = 3.4028234663852886e38
_NOWHERE = Path("/nonexistent-polymodal-serve-root")  # processors never get a path to resolve against it


@dataclass(frozen=True)
class InputField:
    """One key of a request record: which modality it feeds, what kind of value it takes and how it is received
    (the modality type's `ServerInput`)."""

    name: str
    modality: str
    kind: str  # the modality type (image, text ...), or number | category for a tabular column
    how: ServerInput
    choices: tuple[str, ...] = ()  # known categories (kind category)

    @property
    def is_file(self) -> bool:
        return self.how.value == "file"

    def schema(self, multipart: bool) -> dict[str, Any]:
        """The field's JSON Schema in a JSON record or a multipart form."""
        out = self.how.form_schema() if multipart else dict(self.how.schema)
        return {**out, "examples": list(self.choices[:5])} if self.choices else out

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.kind}
        if self.is_file:
            out["encoding"] = "base64 string or data URL (JSON), or a file upload (multipart)"
        if self.choices:
            out["choices"] = list(self.choices)
        return out


@dataclass(frozen=True)
class Problem:
    record: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"record {self.record}" + (f", field {self.field!r}" if self.field else "")
        return f"{where}: {self.message}"


@dataclass
class RequestError(Exception):
    """A request the server cannot use: HTTP status plus every problem found (record index and field)."""

    status: int
    problems: list[Problem] = field(default_factory=list)
    message: str = ""

    def __str__(self) -> str:
        lines = [self.message] if self.message else []
        return "; ".join(lines + [str(p) for p in self.problems[:20]]) + (
            f"; ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else "")


def input_fields(config: Config, processors: Mapping[str, Processor]) -> dict[str, InputField]:
    """Every record key the run reads, by name."""
    fields: dict[str, InputField] = {}
    for m, proc in processors.items():
        how = modality(proc.kind).server
        if isinstance(how, Columns):
            for col in proc.spec.numeric:
                fields[col] = InputField(col, m, "number", how.numeric)
            for col in proc.spec.categorical:
                fields[col] = InputField(col, m, "category", how.categorical,
                                         tuple(getattr(proc, "categories", {}).get(col, [])))
        else:
            name = config.field_of(m)
            fields[name] = InputField(name, m, proc.kind, how)
    return fields


def file_bytes(value: str) -> bytes:
    """The bytes of a base64 string or a `data:<type>;base64,<payload>` URL."""
    text = value.strip()
    if text.startswith("data:"):
        head, sep, text = text.partition(",")
        if not sep or not head.endswith(";base64"):
            raise RecordError("a data URL must be base64-encoded (data:<type>;base64,<payload>)")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise RecordError(f"not valid base64 ({err}); send the file's bytes base64-encoded") from None


def coerce(spec: InputField, value: Any) -> Any:
    """The value a processor reads for one field (None = missing); raise RecordError for a wrong type."""
    if value is None or (isinstance(value, (str, bytes, list)) and is_empty(value)):
        return None
    how = spec.how.value
    if how == "file":
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if not isinstance(value, str):
            raise RecordError(f"expected a base64 string for {spec.kind}, got {type(value).__name__}")
        return file_bytes(value) or None
    if how == "text":
        if not isinstance(value, str):
            raise RecordError(f"expected a string, got {type(value).__name__}")
        return value
    if how == "number":
        return _number(value)
    if how == "category":
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise RecordError(f"expected a category (string), got {type(value).__name__}")
        return str(value)
    return _numbers(value)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RecordError(f"expected a number, got {type(value).__name__}")
    try:
        number = float(value)
    except ValueError:
        raise RecordError(f"expected a number, got {value!r}") from None
    if not math.isfinite(number) or abs(number) > _FLOAT32_MAX:
        raise RecordError(f"expected a finite number within +-3.4e38 (float32), got {value!r}")
    return number


def _numbers(value: Any) -> list[Any]:
    """A vector or sequence: a JSON list (or, from a form field, its JSON text) - never a path to a file."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RecordError("expected a list of numbers (JSON), got a string that is not one") from None
    if not isinstance(value, list):
        raise RecordError(f"expected a list of numbers, got {type(value).__name__}")
    return value


def decode_records(records: Sequence[Any], fields: Mapping[str, InputField],
                   processors: Mapping[str, Processor]) -> Decoded:
    """Arrays of every record, with missing modalities marked; raises RequestError(400) listing every problem."""
    return read_records(coerce_records(records, fields), fields, processors)


def coerce_records(records: Sequence[Any], fields: Mapping[str, InputField]) -> list[dict[str, Any]]:
    """Every record's values as the processors read them (files as bytes, not decoded yet); raises
    RequestError(400) listing every problem."""
    values: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            problems.append(Problem(i, None, f"expected an object of field: value, got {type(record).__name__}"))
            continue
        coerced, bad = _coerce_record(i, record, fields)
        values.append(coerced)
        problems += bad
    if problems:
        raise RequestError(400, problems)
    return values


def read_records(values: Sequence[dict[str, Any]], fields: Mapping[str, InputField],
                 processors: Mapping[str, Processor]) -> Decoded:
    """Decoded arrays of coerced records; raises RequestError(400) listing every record that cannot be read."""
    out = Decoded({m: [] for m in processors}, {m: [] for m in processors}, [], [])
    problems: list[Problem] = []
    for i, record in enumerate(values):
        items, present, failed = _read_record(i, record, processors, fields)
        problems += failed
        for m in processors:
            out.items[m].append(items[m])
            out.present[m].append(present[m])
        out.rows.append(i)
    if problems:
        raise RequestError(400, problems)
    return out


def _coerce_record(i: int, record: dict[str, Any], fields: Mapping[str, InputField]) -> tuple[dict[str, Any],
                                                                                               list[Problem]]:
    problems = [Problem(i, str(k), f"unknown field; this model reads {', '.join(fields)}")
                for k in record if k not in fields]
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        try:
            values[name] = coerce(spec, record.get(name))
        except RecordError as err:
            problems.append(Problem(i, name, str(err)))
            values[name] = None
    return values, problems


def _read_record(i: int, values: dict[str, Any], processors: Mapping[str, Processor],
                 fields: Mapping[str, InputField]) -> tuple[dict[str, Arrays], dict[str, bool], list[Problem]]:
    items: dict[str, Arrays] = {}
    present: dict[str, bool] = {}
    problems: list[Problem] = []
    for m, proc in processors.items():
        names = [f.name for f in fields.values() if f.modality == m]
        raw = {n: values[n] for n in names} if isinstance(modality(proc.kind).server, Columns) else values[names[0]]
        where = names[0] if len(names) == 1 else m
        items[m], present[m] = proc.blank(), False
        if proc.is_missing(raw):
            continue
        try:
            item = proc.read(raw, _NOWHERE)
            proc.check(item)
            _check_finite(item, proc.kind)
            items[m], present[m] = item, True
        except RecordError as err:
            problems.append(Problem(i, where, str(err)))
        except Exception as err:  # noqa: BLE001 - a decoder's own failure on hostile bytes is still bad input
            problems.append(Problem(i, where, f"cannot decode {proc.kind} ({type(err).__name__}: {err})"))
    return items, present, problems


def _check_finite(item: Arrays, kind: str) -> None:
    """Decoded features must be finite: a file whose samples overflow them (a float WAV of 1e30) is bad input."""
    for key, array in item.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise RecordError(f"the {kind} decodes to non-finite {key} values (samples far outside the usual "
                              "range, e.g. float audio beyond +-1); send the file at a normal level")


def merge(parts: Sequence[Decoded]) -> Decoded:
    """One Decoded holding the records of several requests, in order, numbered from 0."""
    out = Decoded.concat(parts)
    out.rows = list(range(len(out.rows)))
    return out
