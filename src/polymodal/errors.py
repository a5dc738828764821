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
        return f"{self.split} row {self.row}, field {self.field!r}: {self.message}"


class DataError(ValueError):
    """Raised when data cannot be used as it is; lists the problems found."""

    def __init__(self, problems: list[Problem], limit: int = 20) -> None:
        self.problems = problems
        shown = "\n  ".join(str(p) for p in problems[:limit])
        more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
        super().__init__(f"{len(problems)} problem(s) in the data:\n  {shown}{more}\n"
                         "Run `polymodal validate CONFIG` for the full list; fix the records, or set the "
                         "modality's on_error to 'skip' or 'missing'.")


class RecordError(ValueError):
    """One value that cannot be read; the caller adds which record and field it came from."""


class UnknownLabel(RecordError):
    """A label the training split never had: in validation or test it leaves the record out of the metrics."""
