"""The `polymodal` command line."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from polymodal.cli_fields import add_fields, from_args
from polymodal.config import ConfigError
from polymodal.options import (CompareOptions, EvaluateOptions, ExportOptions, FitOptions, PredictOptions,
                               QuickstartOptions, ReportOptions, RobustnessOptions, TrainOptions, TuneOptions,
                               ValidateOptions)
from polymodal.serve.settings import DEFAULT_PORT, ServeSettings


def cmd_train(args: argparse.Namespace) -> int:
    from polymodal.factory import load_config
    from polymodal.training.fit import train

    options = from_args(TrainOptions, args)
    config = load_config(args.config)
    if options.out:
        config = config.model_copy(update={"output_dir": options.out})
    result = train(config, resume=options.resume, overwrite=options.overwrite, report=options.report)
    threads, why = args.threads
    print(f"run directory: {result.run_dir}  (torch threads: {threads}, {why})")
    for split, metrics in result.metrics.items():
        print(f"{split:>5}: " + "  ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from polymodal.predictor import Predictor

    data = from_args(EvaluateOptions, args).data
    predictor = Predictor.load(args.run_dir)
    if data:
        metrics, name = predictor.evaluate(data), Path(data).stem
    else:
        metrics, name = predictor.evaluate(*_run_split(predictor.run.config, "test")), "test"
    out = Path(args.run_dir) / f"eval_{name}.json"
    out.write_text(json.dumps(metrics, indent=2))
    print("  ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    print(f"written: {out}")
    return 0


def _run_split(config, split: str):  # type: ignore[no-untyped-def]
    from polymodal.data.sources import Table, load_splits
    from polymodal.data.splits import label_field

    tables = load_splits(config.data, label_field(config))
    if split not in tables:
        raise SystemExit(f"the run's data has no {split} split; pass --data")
    table: Table = tables[split]
    return table.frame, table.root


def cmd_predict(args: argparse.Namespace) -> int:
    from polymodal.predictor import Predictor

    options = from_args(PredictOptions, args)
    predictor = Predictor.load(args.run_dir)
    frame = predictor.predict_frame(options.data, with_reliability=predictor.has_reliability)
    ids = _id_column(options.data)
    if ids is None:
        frame.to_csv(options.out, index_label="row")
    else:
        frame.insert(0, str(ids.name), ids.to_numpy())
        frame.to_csv(options.out, index=False)
    flagged = int(frame["no_input"].sum())
    note = f" ({flagged} record(s) with every modality empty: column no_input)" if flagged else ""
    print(f"{len(frame)} predictions written to {options.out}{note}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from polymodal.apps.fit import fit_table

    o = from_args(FitOptions, args)
    fit_table(args.data, o.target, split_column=o.split_column, ignore=o.ignore, time_limit=o.time_limit,
              preset=o.preset, out=o.out, seed=o.seed)
    return 0


def _id_column(path: str):  # type: ignore[no-untyped-def]
    """The input table's record-id column (id-like: unique, named or shaped like an id), if it has one."""
    from polymodal.apps.infer import column_kind
    from polymodal.data.sources import read_table, table_root

    frame = read_table(path)
    for name in frame.columns:
        if column_kind(str(name), frame[name], table_root(Path(path))) == "id":
            return frame[name]
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    import polymodal.serve
    from polymodal.serve.security import API_KEY_ENV

    if args.workers < 1:
        raise SystemExit(f"--workers must be at least 1, got {args.workers}")
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise SystemExit(f"polymodal serve needs the serving extra: pip install 'polymodal[serve]' ({err})") from None
    settings = from_args(ServeSettings, args, api_key=args.api_key or os.environ.get(API_KEY_ENV) or None)
    polymodal.serve.serve(args.run_dir, host=args.host, port=args.port, settings=settings)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from polymodal.data.validate import validate
    from polymodal.factory import load_config

    report = validate(load_config(args.config))
    shown = report.problems if from_args(ValidateOptions, args).all else report.fatal
    for problem in shown:
        print(("ERROR " if problem.fatal else "warn  ") + str(problem))
    print(report.summary())
    return 1 if report.fatal else 0


def cmd_export(args: argparse.Namespace) -> int:
    from polymodal.export import export_run

    o = from_args(ExportOptions, args)
    result = export_run(args.run_dir, o.format, out=o.out, opset=o.opset, exporter=o.exporter, fallback=o.fallback)
    if result.note:
        print(f"note: {result.note}", file=sys.stderr)
    print(f"exported {result.format} ({result.exporter}; max difference to PyTorch {result.max_abs_diff:.2g}): "
          f"{result.model_file}")
    print(f"written: {result.out_dir / 'export.json'}, processors.json, config.yaml")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from polymodal.encoders import ENCODERS
    from polymodal.fusion import FUSIONS
    from polymodal.tasks import TASKS

    registries = {"encoders": ENCODERS, "fusions": FUSIONS, "tasks": TASKS}
    for kind in [args.kind] if args.kind else list(registries):
        if not args.kind:
            print(f"{kind}:")
        for name in registries[kind].names():
            print(("  " if not args.kind else "") + name)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from polymodal.config import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from polymodal.datasets import DATASETS

    for name, entry in DATASETS.items():
        print(f"{name:<14} {entry.description}")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from polymodal.apps.quickstart import quickstart

    o = from_args(QuickstartOptions, args)
    quickstart(o.out, epochs=o.epochs, seed=o.seed, variant=o.variant, report=o.report)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from polymodal.apps.compare import compare, format_summary
    from polymodal.factory import load_config
    from polymodal.fusion import FUSIONS
    from polymodal.tasks import build_task

    o = from_args(CompareOptions, args)
    config = load_config(args.config)
    fusions = FUSIONS.names() if o.fusions == "all" else [f.strip() for f in o.fusions.split(",") if f.strip()]
    for name in fusions:
        FUSIONS.get(name)
    out = Path(o.out or f"runs/compare_{config.name}")
    summary = compare(config, fusions, o.seeds, out, unimodal=o.unimodal)
    print(format_summary(summary, build_task(config.target).monitor, o.seeds))
    print(f"written: {out / 'summary.csv'}, {out / 'comparison.csv'}, {out / 'comparison.png'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from polymodal.evaluation.report import write_report

    path = write_report(args.run_dir, robustness=from_args(ReportOptions, args).robustness)
    print(f"written: {path} and {path.with_suffix('.md')}")
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    from polymodal.evaluation.report import write_report
    from polymodal.evaluation.robustness import run_robustness
    from polymodal.evaluation.shifted import run_shifted

    o = from_args(RobustnessOptions, args)
    shifted = run_shifted(args.run_dir, data=o.data, baseline=o.baseline, held_out=o.held_out)
    _, summary = run_robustness(args.run_dir, data=o.data, baseline=o.baseline)
    print(summary.round(4).to_string(index=False))
    print("shifted modality:\n" + shifted.round(4).to_string(index=False))
    write_report(args.run_dir)
    print(f"written: {Path(args.run_dir) / 'robustness.csv'}, robustness_summary.csv, robustness_*.png, "
          "shifted_modality.csv; report updated")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from polymodal.apps.tune import tune
    from polymodal.factory import load_config

    o = from_args(TuneOptions, args)
    result = tune(load_config(args.config), o.trials, out=o.out, storage=o.storage, study_name=o.study_name,
                  timeout=o.timeout)
    print(f"study {result.study_name!r} ({result.storage}): {result.n_trials} trials; best value "
          f"{result.best_value:.4f} with " + ", ".join(f"{k}={v}" for k, v in result.best_params.items()))
    print(f"written: {result.best_config}, {result.trials_csv}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polymodal", description="Multimodal learning: train, evaluate, predict.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("quickstart", help="train unimodal baselines and fusions on AV-Digits, print a table")
    add_fields(p, QuickstartOptions)  # each command's options: its dataclass's fields, types, defaults and help
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("fit", help="zero-config: infer modalities, train candidates and an ensemble, keep the best")
    p.add_argument("data", help="a table (csv/parquet/jsonl); file paths in it are relative to its folder")
    add_fields(p, FitOptions, skip=["notes"])
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("train", help="train from a YAML config")
    p.add_argument("config")
    add_fields(p, TrainOptions)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tune", help="hyperparameter search (Optuna) over the config's `tune:` space")
    p.add_argument("config")
    add_fields(p, TuneOptions)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("compare", help="train several fusions and the unimodal baselines over seeds; one table")
    p.add_argument("config")
    add_fields(p, CompareOptions)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("robustness", help="corruption and missing-modality curves of a run; updates its report")
    p.add_argument("run_dir")
    add_fields(p, RobustnessOptions)
    p.set_defaults(func=cmd_robustness)

    p = sub.add_parser("report", help="write RUN_DIR/report.html and report.md")
    p.add_argument("run_dir")
    add_fields(p, ReportOptions)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("evaluate", help="metrics of a trained run on labelled data")
    p.add_argument("run_dir")
    add_fields(p, EvaluateOptions)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predictions of a trained run for new records")
    p.add_argument("run_dir")
    add_fields(p, PredictOptions)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("serve", help="HTTP server of a trained run: /predict, /embed, /metadata, a web page at /")
    p.add_argument("run_dir")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default: {DEFAULT_PORT})")
    add_fields(p, ServeSettings)  # every server setting, with its type, default and help
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("validate", help="check the data of a config; exit 1 if training would stop")
    p.add_argument("config")
    add_fields(p, ValidateOptions)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("export", help="export a trained run to ONNX or TorchScript, with a manifest")
    p.add_argument("run_dir")
    add_fields(p, ExportOptions)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("list", help="registered encoders, fusions and tasks")
    p.add_argument("kind", nargs="?", choices=["encoders", "fusions", "tasks"])
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("schema", help="print the config's JSON Schema")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("datasets", help="built-in datasets")
    p.add_argument("action", choices=["list"])
    p.set_defaults(func=cmd_datasets)
    for command in sub.choices.values():  # `polymodal train CFG --debug` as well as `polymodal --debug train CFG`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


LIGHT_COMMANDS = {"list", "schema", "datasets", "validate"}  # no tensor work: torch threads left alone


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in LIGHT_COMMANDS:
        from polymodal.threads import set_threads

        args.threads = set_threads()
    try:
        return int(args.func(args))
    except Exception as err:  # one message, exit 2; the traceback only with --debug
        if args.debug:
            raise
        print(f"error: {describe_error(err)}", file=sys.stderr)
        return 2


def describe_error(err: Exception) -> str:
    """The message of an error a user can cause, with what to do where the error itself does not say."""
    if isinstance(err, (ConfigError, FileNotFoundError, ValueError, KeyError)):
        return str(err).strip(chr(34) + "'") if isinstance(err, KeyError) else str(err)
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return f"no space left on device ({err.filename or 'while writing'}); free some space and run again"
    return f"{type(err).__name__}: {err} (run with --debug for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
