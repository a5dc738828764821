"""The options of the commands that drive a library function, one typed dataclass each, torch-free.

Each is the one place its defaults live: the command line derives its flags from the fields (`cli_fields`) and
calls the function with the dataclass's values; where the function has defaults of its own, they are the
dataclass's (tests/test_cli_options.py checks it). Positional arguments (a config, a run directory, a table)
stay in the command's parser; only the options are fields. `metadata`: `help`, and for the command line
`flag` (a flag name other than the field's), `sep` (one value split at this separator), `repeat` (the flag
given once per value) and `metavar`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Preset = Literal["fast", "best"]


def _help(text: str, **cli: object) -> dict[str, object]:
    return {"help": text, **cli}


@dataclass
class QuickstartOptions:
    """`polymodal quickstart` / `apps.quickstart.quickstart`."""

    out: Path = field(default=Path("runs/quickstart"), metadata=_help("output folder"))
    epochs: int = field(default=8, metadata=_help("training epochs of each model"))
    seed: int = field(default=0, metadata=_help("random seed"))
    variant: Literal["mnist", "fashion"] = field(default="mnist", metadata=_help("which AV-Digits images"))
    report: bool = field(default=False, metadata=_help("write each model's report now (else `polymodal report`)"))


@dataclass
class FitOptions:
    """`polymodal fit` / `apps.fit.fit_table` (`notes`: the warnings a fit collects; not an option)."""

    target: str = field(metadata=_help("the column to predict"))
    split_column: str | None = field(
        default=None, metadata=_help("column with train/val/test (default: a seeded stratified split)"))
    ignore: tuple[str, ...] = field(default=(), metadata=_help("comma-separated columns to leave out", sep=","))
    time_limit: float | None = field(default=None, metadata=_help("seconds; no new candidate starts after that"))
    preset: Preset = field(default="best", metadata=_help(
        "fast: smaller images, fewer candidate settings; best: a wider search"))
    out: Path = field(default=Path("runs/fit"), metadata=_help("output folder (leaderboard.csv, config.yaml, best/)"))
    seed: int = field(default=0, metadata=_help("random seed of the split and the candidates"))
    notes: list[str] = field(default_factory=list)


@dataclass
class TrainOptions:
    """`polymodal train` / `training.fit.train`."""

    out: str | None = field(default=None, metadata=_help("run directory (overrides output_dir)"))
    resume: bool = field(default=False, metadata=_help("continue from the run's last checkpoint"))
    overwrite: bool = field(default=False, metadata=_help(
        "replace an existing run directory (once the new run is complete)"))
    report: bool = field(default=True, metadata=_help(
        "write report.html/report.md (with --no-report, `polymodal report` writes it later)"))


@dataclass
class TuneOptions:
    """`polymodal tune` / `apps.tune.tune`."""

    trials: int = field(metadata=_help("trials to run now (added to the study's)"))
    storage: str | None = field(default=None, metadata=_help(
        "Optuna storage URL (default: sqlite file study.db in the output folder)"))
    study_name: str | None = field(default=None, metadata=_help("study name (default: the config's name)",
                                                                flag="study"))
    timeout: float | None = field(default=None, metadata=_help("stop starting trials after this many seconds"))
    out: Path | None = field(default=None, metadata=_help("output folder (default runs/tune_<name>)"))


@dataclass
class CompareOptions:
    """`polymodal compare` / `apps.compare.compare`."""

    fusions: str = field(default="concat,late", metadata=_help("comma-separated names, or 'all'"))
    seeds: int = field(default=3, metadata=_help("seeds per variant"))
    out: Path | None = field(default=None, metadata=_help("output folder (default runs/compare_<name>)"))
    unimodal: bool = field(default=True, metadata=_help("also train the unimodal baselines"))


@dataclass
class RobustnessOptions:
    """`polymodal robustness` / `evaluation.robustness.run_robustness` and `evaluation.shifted.run_shifted`."""

    data: str | None = field(default=None, metadata=_help("labelled table (default: the run's test split)"))
    baseline: str | None = field(default=None, metadata=_help(
        "a run directory whose curves give the trend for effective robustness"))
    held_out: tuple[str, ...] = field(default=(), metadata=_help(
        "labelled table whose MODALITY comes from another domain (repeatable), e.g. human.csv:audio",
        repeat=True, metavar="TABLE:MODALITY"))


@dataclass
class ReportOptions:
    """`polymodal report` / `evaluation.report.write_report`."""

    robustness: bool = field(default=False, metadata=_help("compute the robustness curves first"))


@dataclass
class EvaluateOptions:
    """`polymodal evaluate` / `Predictor.evaluate`."""

    data: str | None = field(default=None, metadata=_help("table to evaluate on (default: the run's test split)"))


@dataclass
class PredictOptions:
    """`polymodal predict` / `Predictor.predict_frame`."""

    data: str = field(metadata=_help("table of records to predict"))
    out: Path = field(default=Path("predictions.csv"), metadata=_help("CSV file to write"))


@dataclass
class ValidateOptions:
    """`polymodal validate` / `data.validate.validate`."""

    all: bool = field(default=False, metadata=_help("also list warnings (empty fields, skipped records)"))


@dataclass
class ExportOptions:
    """`polymodal export` / `export.export_run` (which checks format and exporter, naming the choices)."""

    format: str = field(default="onnx", metadata=_help("onnx or torchscript"))
    out: Path | None = field(default=None, metadata=_help("output folder (default RUN_DIR/export_<format>)"))
    opset: int | None = field(default=None, metadata=_help("ONNX opset (default 18)"))
    exporter: str = field(default="auto", metadata=_help(
        "ONNX exporter: auto (legacy, then dynamo), dynamo or legacy"))
    fallback: bool = field(default=False, metadata=_help("write TorchScript if ONNX export fails"))
