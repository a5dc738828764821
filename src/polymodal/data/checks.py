"""Whole-split checks after decoding: records left out for lack of a label, a split with a single class."""

from __future__ import annotations

from polymodal.data.dataset import Decoded
from polymodal.errors import Problem
from polymodal.tasks import Task


def usable_records(decoded: Decoded) -> int:
    """Decoded records that no fatal problem touches (training would stop on the others)."""
    failed = {p.row for p in decoded.fatal}
    return sum(row not in failed for row in decoded.rows)


def single_class(decoded: Decoded, task: Task) -> str | None:
    """The one class every record of a classification split has, or None (several, or not single-label)."""
    classes = list(getattr(task, "classes", []))
    if not classes or not decoded.targets or decoded.targets[0].ndim != 0:
        return None
    seen = {int(t) for t in decoded.targets}
    return classes[seen.pop()] if len(seen) == 1 else None


def split_notes(split: str, decoded: Decoded, task: Task) -> list[Problem]:
    """Warnings about a whole split: unlabelled records left out, a validation or test split of one class."""
    notes = []
    field = "/".join(task.fields) or "(target)"
    if decoded.unlabelled:
        notes.append(Problem(split, -1, field, f"{decoded.unlabelled} record(s) without a label left out of the "
                                                f"{split} split (fill the labels in to use them)", fatal=False))
    only = single_class(decoded, task) if split != "train" else None
    if only is not None:
        notes.append(Problem(split, -1, field, f"every record of the {split} split has class {only!r}: its metrics "
                                               "cannot tell a good model from a constant one; use a split with "
                                               "every class (data.split)", fatal=False))
    return notes
