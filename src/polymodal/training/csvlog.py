"""The run's per-epoch log, `logs/metrics.csv`: one row per validation and one per training epoch end, columns
`epoch`, `step` and every logged name, sorted (the layout the report, `tune` and users' notebooks read)."""

from __future__ import annotations

import csv
import os
from pathlib import Path


class CsvLog:
    """Rows kept in memory and the whole file rewritten (atomically) after each epoch; a resumed run keeps the
    rows of the epochs before the one it resumes at."""

    def __init__(self, path: Path, resume_epoch: int | None = None) -> None:
        self.path = path
        self.rows: list[dict[str, float | int]] = []
        if resume_epoch is not None and path.is_file():
            with path.open(newline="") as f:
                self.rows = [{k: parse(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
            self.rows = [r for r in self.rows if "epoch" in r and r["epoch"] < resume_epoch]

    def add(self, epoch: int, step: int, values: dict[str, float]) -> None:
        if values:
            self.rows.append({**values, "epoch": epoch, "step": step})

    def write(self) -> None:
        columns = sorted({k for row in self.rows for k in row})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)


def parse(text: str) -> float | int:
    number = float(text)
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
