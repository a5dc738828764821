"""Errors that name the record or key at fault and say what to do."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem with one record: where it is and what is wrong."""

    split: str
    row: int
    field: str
    message: str
    fatal: bool = True

    def __str__(self) -> str:
        where = f"{self.split} row {self.row}" if self.row >= 0 else self.split  # row -1: the whole split
        return f"{where}, field {self.field!r}: {self.message}"


class DataError(ValueError):
    """Raised when data cannot be used as it is; lists the problems found."""

    def __init__(self, problems: list[Problem], limit: int = 20) -> None:
        self.problems = problems
        shown = "\n  ".join(str(p) for p in problems[:limit])
        more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
        super().__init__(f"{len(problems)} problem(s) in the data:\n  {shown}{more}\n"
                         "Run `polymodal validate CONFIG` for the full list. Fix or drop those records; for "
                         "unreadable values of a modality, its on_error: skip (drop the record) or missing (use "
                         "the record without it) also works (labels must be fixed or dropped).")


class RecordError(ValueError):
    """One value that cannot be read; the caller adds which record and field it came from."""


class UnknownLabel(RecordError):
    """A label the training split never had: in validation or test it leaves the record out of the metrics."""
