"""One small registry class: names to constructors, filled by explicit imports."""

from __future__ import annotations

import inspect
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
        return self.get(name)(**provided, **user)
