"""Every command's options come from its options dataclass (polymodal.options): the parser's defaults are the
dataclass's, the dataclass's are the called function's, and no command's --help imports torch."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from polymodal import options as o
from polymodal.cli import build_parser, main
from polymodal.cli_fields import from_args


def subparsers() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def functions() -> list[tuple[type, Callable[..., Any]]]:
    from polymodal.apps.compare import compare
    from polymodal.apps.fit import fit_table
    from polymodal.apps.quickstart import quickstart
    from polymodal.apps.tune import tune
    from polymodal.evaluation.report import write_report
    from polymodal.evaluation.robustness import run_robustness
    from polymodal.evaluation.shifted import run_shifted
    from polymodal.export import export_run
    from polymodal.training.fit import train

    return [(o.QuickstartOptions, quickstart), (o.FitOptions, fit_table), (o.TrainOptions, train),
            (o.TuneOptions, tune), (o.CompareOptions, compare), (o.ReportOptions, write_report),
            (o.RobustnessOptions, run_robustness), (o.RobustnessOptions, run_shifted), (o.ExportOptions, export_run)]


COMMANDS = {"quickstart": o.QuickstartOptions, "fit": o.FitOptions, "train": o.TrainOptions, "tune": o.TuneOptions,
            "compare": o.CompareOptions, "robustness": o.RobustnessOptions, "report": o.ReportOptions,
            "evaluate": o.EvaluateOptions, "predict": o.PredictOptions, "validate": o.ValidateOptions,
            "export": o.ExportOptions}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_option_is_a_field_with_its_default(command: str) -> None:
    settings = COMMANDS[command]
    actions = {a.dest: a for a in subparsers()[command]._actions}
    fields = [f for f in dataclasses.fields(settings) if f.name != "notes"]
    for f in fields:
        if f.default is dataclasses.MISSING:
            assert actions[f.name].required, f.name
        else:
            default = actions[f.name].default  # a repeatable flag appends to a list
            assert (tuple(default) if isinstance(default, list) else default) == f.default, f.name
        assert f.metadata["help"] in (actions[f.name].help or ""), f.name
    options = {a.dest for a in actions.values() if a.option_strings} - {"help", "debug"}
    assert options == {f.name for f in fields}  # no hand-written option beside the dataclass's


@pytest.mark.parametrize("pair", range(9))
def test_the_called_functions_defaults_are_the_dataclasss(pair: int) -> None:
    settings, function = functions()[pair]
    defaults = {f.name: f.default for f in dataclasses.fields(settings) if f.default is not dataclasses.MISSING}
    shared = [p for p in inspect.signature(function).parameters.values()
              if p.name in defaults and p.default is not inspect.Parameter.empty]
    assert shared, function.__name__
    for p in shared:
        assert p.default == defaults[p.name], f"{function.__name__}({p.name}=...)"


def test_serves_defaults_are_the_settings() -> None:
    from polymodal.serve import serve
    from polymodal.serve.settings import DEFAULT_PORT, ServeSettings

    parameters = inspect.signature(serve).parameters
    assert (parameters["host"].default, parameters["port"].default) == (ServeSettings.host, DEFAULT_PORT)
    assert subparsers()["serve"].parse_args(["run"]).port == DEFAULT_PORT


def test_no_option_given_gives_the_dataclass() -> None:
    parsers = subparsers()
    assert from_args(o.CompareOptions, parsers["compare"].parse_args(["c.yaml"])) == o.CompareOptions()
    assert from_args(o.TrainOptions, parsers["train"].parse_args(["c.yaml"])) == o.TrainOptions()
    assert from_args(o.RobustnessOptions, parsers["robustness"].parse_args(["run"])) == o.RobustnessOptions()


def test_options_parse_as_before() -> None:
    parsers = subparsers()
    fit = from_args(o.FitOptions, parsers["fit"].parse_args(["t.csv", "--target", "y", "--ignore", "a, b,,c"]))
    assert fit.ignore == ("a", "b", "c") and fit.target == "y"
    held = parsers["robustness"].parse_args(["run", "--held-out", "x.csv:audio", "--held-out", "y.csv:image"])
    assert from_args(o.RobustnessOptions, held).held_out == ("x.csv:audio", "y.csv:image")
    tune = from_args(o.TuneOptions, parsers["tune"].parse_args(["c.yaml", "--trials", "3", "--study", "s"]))
    assert (tune.trials, tune.study_name) == (3, "s")
    assert from_args(o.TrainOptions, parsers["train"].parse_args(["c.yaml", "--no-report"])).report is False
    assert from_args(o.CompareOptions, parsers["compare"].parse_args(["c", "--no-unimodal"])).unimodal is False
    with pytest.raises(SystemExit):
        main(["fit", "t.csv"])  # --target is required


def test_every_commands_help_imports_no_torch() -> None:
    commands = sorted(subparsers())
    code = ("import contextlib, io, sys\nfrom polymodal.cli import main\n"
            f"for command in [[]] + [[c] for c in {commands!r}]:\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "        main(command + ['--help'])\n"
            "print(' '.join(sorted(sys.modules)))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(run.stdout.split())
    assert "polymodal.options" in loaded and "torch" not in loaded
