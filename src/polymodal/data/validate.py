"""`polymodal validate`: read every record as training would, and list every problem with row and field."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from polymodal.config import Config
from polymodal.data.checks import split_notes, usable_records
from polymodal.data.dataset import build_pipeline, decode, fit_raw
from polymodal.data.sources import load_splits
from polymodal.errors import Problem, RecordError


@dataclass
class ValidationReport:
    problems: list[Problem] = field(default_factory=list)
    records: dict[str, int] = field(default_factory=dict)
    usable: dict[str, int] = field(default_factory=dict)
    missing: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def fatal(self) -> list[Problem]:
        return [p for p in self.problems if p.fatal]

    def summary(self) -> str:
        lines = []
        for split, n in self.records.items():
            miss = ", ".join(f"{m}: {c}" for m, c in sorted(self.missing.get(split, Counter()).items()))
            lines.append(f"{split}: {n} records, {self.usable.get(split, 0)} usable"
                         + (f"; missing modalities {miss}" if miss else ""))
        errors, warnings = len(self.fatal), len(self.problems) - len(self.fatal)
        verdict = "training would stop" if errors else "ready to train"
        lines.append(f"{errors} error(s), {warnings} warning(s): {verdict}")
        return "\n".join(lines)


def validate(config: Config) -> ValidationReport:
    """Check the data a config points at without training; never raises on bad records."""
    from polymodal.data.splits import ensure_val, label_field

    report = ValidationReport()
    tables = ensure_val(load_splits(config.data, label_field(config)), config)
    processors, task = build_pipeline(config)
    try:
        fit_raw(tables["train"], processors, task)
    except (RecordError, KeyError) as err:
        report.problems.append(Problem("train", -1, "(whole split)", str(err).strip("'\"")))
        return report
    for split, table in tables.items():
        decoded = decode(table, processors, task, fit=split == "train")
        report.records[split] = len(table)
        report.usable[split] = usable_records(decoded)
        report.problems += decoded.problems + split_notes(split, decoded, task)
        report.missing[split] = Counter({m: n for m, ok in decoded.present.items() if (n := ok.count(False))})
    return report
