"""Command-line options derived from a settings dataclass's typed fields, so that no default is typed twice.

    add_fields(parser, ServeSettings)                # --max-batch (int, default 32, help from the field), ...
    settings = from_args(ServeSettings, args)        # the dataclass back from the parsed options

A field `max_batch: int = field(default=32, metadata={"help": ...})` becomes `--max-batch` with type int, default 32
and that help; `X | None` takes X or stays None; `tuple[X, ...]` takes one or more values; `Literal[...]` gives
the choices; `bool` becomes `--name/--no-name`; `Path` is taken as given; a field without a default is required.
Field metadata for the command line: `flag` (a name other than the field's), `sep` (a tuple field given as one
value split at this separator), `repeat` (a tuple field given as the flag once per value), `metavar`.
Light: no torch, so that `polymodal --help` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _split(sep: str) -> Callable[[str], tuple[str, ...]]:
    def parse(value: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in value.split(sep) if part.strip())
    return parse


def _strip_optional(hint: Any) -> Any:
    """`X | None` -> X (anything else unchanged)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def argument(field: dataclasses.Field[Any], hint: Any) -> dict[str, Any]:
    """argparse keyword arguments for one dataclass field."""
    meta = field.metadata
    help_text = meta.get("help", "")
    default = field.default
    kind = _strip_optional(hint)
    if default is dataclasses.MISSING:
        out: dict[str, Any] = {"required": True, "help": help_text}
    else:
        shown = f" (default: {default})" if default not in (None, ()) and "default:" not in help_text else ""
        out = {"default": default, "help": help_text + shown}
    if "metavar" in meta:
        out["metavar"] = meta["metavar"]
    if kind is bool:
        return {**out, "action": argparse.BooleanOptionalAction}
    if typing.get_origin(kind) is typing.Literal:
        return {**out, "choices": list(typing.get_args(kind)), "type": type(typing.get_args(kind)[0])}
    if typing.get_origin(kind) is tuple and "sep" in meta:
        return {**out, "type": _split(meta["sep"])}
    if typing.get_origin(kind) is tuple and meta.get("repeat"):  # argparse appends to a copy of the default
        return {**out, "action": "append", "default": list(default), "type": typing.get_args(kind)[0]}
    if typing.get_origin(kind) is tuple:
        return {**out, "nargs": "+", "type": typing.get_args(kind)[0]}
    if kind in (int, float, str, Path):
        return {**out, "type": kind}
    raise TypeError(f"field {field.name!r}: no command-line form for type {hint!r}")


def add_fields(parser: argparse.ArgumentParser, settings: type, skip: Iterable[str] = ()) -> None:
    """Add one option per field of the dataclass `settings` (except `skip`) to `parser`."""
    hints = typing.get_type_hints(settings)
    for f in dataclasses.fields(settings):
        if f.name not in skip:
            parser.add_argument(flag(f.metadata.get("flag", f.name)), dest=f.name, **argument(f, hints[f.name]))


def from_args(settings: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """The dataclass `settings` from parsed options (lists back to tuples), with `overrides` on top."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(settings)  # type: ignore[arg-type]
              if hasattr(args, f.name)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return settings(**{**values, **overrides})
