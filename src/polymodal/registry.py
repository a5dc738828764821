"""One small registry class: names to constructors, filled by explicit imports."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to constructors (classes or builder functions).

    Args:
        kind: what is registered ("fusion", "encoder", ...), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def add(obj: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def options(self, name: str, provided: frozenset[str] = frozenset()) -> dict[str, inspect.Parameter]:
        """The keyword options a user may set for `name` (its signature minus `provided`)."""
        params = inspect.signature(self.get(name)).parameters.values()
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return {p.name: p for p in params if p.name not in provided and p.kind in kinds}

    def check_options(self, name: str, options: Mapping[str, Any], provided: frozenset[str] = frozenset(),
                      where: str = "") -> None:
        """Raise ValueError naming any option that `name` does not accept."""
        allowed = self.options(name, provided)
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(f"{where}{self.kind} {name!r} has no option {', '.join(map(repr, unknown))}; "
                             f"allowed: {', '.join(sorted(allowed)) or '(none)'}")

    def build(self, name: str, /, *, user: Mapping[str, Any] | None = None, **provided: Any) -> T:
        """Construct `name` from derived arguments (`provided`) plus user options."""
        user = dict(user or {})
        self.check_options(name, user, frozenset(provided))
        self.check_types(name, user)
        try:
            return self.get(name)(**provided, **user)
        except (TypeError, ValueError, RuntimeError) as err:
            given = ", ".join(f"{k}={v!r}" for k, v in user.items()) or "defaults"
            raise OptionError(f"{self.kind} {name!r} cannot be built with {given}: {err}; check the options' "
                              "values") from err

    def check_types(self, name: str, options: Mapping[str, Any]) -> None:
        """Raise OptionError naming an option whose value does not have its annotated type."""
        from pydantic import TypeAdapter, ValidationError

        obj = self.get(name)
        try:
            hints = typing.get_type_hints(obj.__init__ if inspect.isclass(obj) else obj)
        except Exception:  # annotations that cannot be resolved at run time: leave the check to the constructor
            return
        for key, value in options.items():
            try:
                adapter = TypeAdapter(hints[key])
            except Exception:  # no annotation, or a type pydantic cannot check (a module, a callable...)
                continue
            try:
                adapter.validate_python(value, strict=isinstance(value, str))
            except ValidationError:
                raise OptionError(f"{self.kind} {name!r}: option {key}={value!r} is not a valid "
                                  f"{_type_name(hints[key])}") from None


class OptionError(ValueError):
    """A user option of a registered method has the wrong type or value."""


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
