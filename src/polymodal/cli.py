"""The `polymodal` command line."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from polymodal.cli_fields import add_fields, from_args
from polymodal.config import ConfigError
from polymodal.serve.settings import ServeSettings


def _quiet_lightning() -> None:
    """Keep Lightning's banners and deprecation chatter out of the command line's output."""
    import warnings

    import pytorch_lightning  # noqa: F401  (configures its loggers on import; adjust them afterwards)

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*(LeafSpec|does not have many workers|litlogger).*")
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def cmd_train(args: argparse.Namespace) -> int:
    from polymodal.factory import load_config
    from polymodal.training.fit import train

    config = load_config(args.config)
    if args.out:
        config = config.model_copy(update={"output_dir": args.out})
    result = train(config, resume=args.resume, overwrite=args.overwrite, report=not args.no_report)
    threads, why = args.threads
    print(f"run directory: {result.run_dir}  (torch threads: {threads}, {why})")
    for split, metrics in result.metrics.items():
        print(f"{split:>5}: " + "  ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from polymodal.predictor import Predictor

    predictor = Predictor.load(args.run_dir)
    if args.data:
        metrics, name = predictor.evaluate(args.data), Path(args.data).stem
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

    predictor = Predictor.load(args.run_dir)
    frame = predictor.predict_frame(args.data, with_reliability=predictor.has_reliability)
    ids = _id_column(args.data)
    if ids is None:
        frame.to_csv(args.out, index_label="row")
    else:
        frame.insert(0, str(ids.name), ids.to_numpy())
        frame.to_csv(args.out, index=False)
    flagged = int(frame["no_input"].sum())
    note = f" ({flagged} record(s) with every modality empty: column no_input)" if flagged else ""
    print(f"{len(frame)} predictions written to {args.out}{note}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from polymodal.apps.fit import fit_table

    ignore = [c.strip() for c in (args.ignore or "").split(",") if c.strip()]
    fit_table(args.data, args.target, split_column=args.split_column, ignore=ignore, time_limit=args.time_limit,
              preset=args.preset, out=args.out)
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
    shown = report.problems if args.all else report.fatal
    for problem in shown:
        print(("ERROR " if problem.fatal else "warn  ") + str(problem))
    print(report.summary())
    return 1 if report.fatal else 0


def cmd_export(args: argparse.Namespace) -> int:
    from polymodal.export import export_run

    result = export_run(args.run_dir, args.format, out=args.out, opset=args.opset, exporter=args.exporter,
                        fallback=args.fallback)
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

    quickstart(Path(args.out), epochs=args.epochs, seed=args.seed, variant=args.variant)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from polymodal.apps.compare import compare, format_summary
    from polymodal.factory import load_config
    from polymodal.fusion import FUSIONS
    from polymodal.tasks import build_task

    config = load_config(args.config)
    fusions = FUSIONS.names() if args.fusions == "all" else [f.strip() for f in args.fusions.split(",") if f.strip()]
    for name in fusions:
        FUSIONS.get(name)
    out = Path(args.out or f"runs/compare_{config.name}")
    summary = compare(config, fusions, args.seeds, out, unimodal=not args.no_unimodal)
    print(format_summary(summary, build_task(config.target).monitor, args.seeds))
    print(f"written: {out / 'summary.csv'}, {out / 'comparison.csv'}, {out / 'comparison.png'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from polymodal.evaluation.report import write_report

    path = write_report(args.run_dir, robustness=args.robustness)
    print(f"written: {path} and {path.with_suffix('.md')}")
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    from polymodal.evaluation.report import write_report
    from polymodal.evaluation.robustness import run_robustness
    from polymodal.evaluation.shifted import run_shifted

    shifted = run_shifted(args.run_dir, data=args.data, baseline=args.baseline, held_out=args.held_out)
    _, summary = run_robustness(args.run_dir, data=args.data, baseline=args.baseline)
    print(summary.round(4).to_string(index=False))
    print("shifted modality:\n" + shifted.round(4).to_string(index=False))
    write_report(args.run_dir)
    print(f"written: {Path(args.run_dir) / 'robustness.csv'}, robustness_summary.csv, robustness_*.png, "
          "shifted_modality.csv; report updated")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from polymodal.apps.tune import tune
    from polymodal.factory import load_config

    config = load_config(args.config)
    result = tune(config, args.trials, out=Path(args.out) if args.out else None, storage=args.storage,
                  study_name=args.study, timeout=args.timeout)
    print(f"study {result.study_name!r} ({result.storage}): {result.n_trials} trials; best value "
          f"{result.best_value:.4f} with " + ", ".join(f"{k}={v}" for k, v in result.best_params.items()))
    print(f"written: {result.best_config}, {result.trials_csv}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polymodal", description="Multimodal learning: train, evaluate, predict.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("quickstart", help="train unimodal baselines and fusions on AV-Digits, print a table")
    p.add_argument("--out", default="runs/quickstart")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variant", default="mnist", choices=["mnist", "fashion"])
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("fit", help="zero-config: infer modalities, train candidates and an ensemble, keep the best")
    p.add_argument("data", help="a table (csv/parquet/jsonl); file paths in it are relative to its folder")
    p.add_argument("--target", required=True, help="the column to predict")
    p.add_argument("--split-column", help="column with train/val/test (default: a seeded stratified split)")
    p.add_argument("--ignore", help="comma-separated columns to leave out")
    p.add_argument("--time-limit", type=float, help="seconds; no new candidate starts after that")
    p.add_argument("--preset", default="best", choices=["fast", "best"])
    p.add_argument("--out", default="runs/fit", help="output folder (leaderboard.csv, config.yaml, best/)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("train", help="train from a YAML config")
    p.add_argument("config")
    p.add_argument("--out", help="run directory (overrides output_dir)")
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument("--no-report", action="store_true", help="skip report.html/report.md (`polymodal report` "
                   "writes it later)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory (once the new "
                                                            "run is complete)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tune", help="hyperparameter search (Optuna) over the config's `tune:` space")
    p.add_argument("config")
    p.add_argument("--trials", type=int, required=True, help="trials to run now (added to the study's)")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite file study.db in the output folder)")
    p.add_argument("--study", help="study name (default: the config's name)")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--out", help="output folder (default runs/tune_<name>)")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("compare", help="train several fusions and the unimodal baselines over seeds; one table")
    p.add_argument("config")
    p.add_argument("--fusions", default="concat,late", help="comma-separated names, or 'all'")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", help="output folder (default runs/compare_<name>)")
    p.add_argument("--no-unimodal", action="store_true", help="skip the unimodal baselines")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("robustness", help="corruption and missing-modality curves of a run; updates its report")
    p.add_argument("run_dir")
    p.add_argument("--data", help="labelled table (default: the run's test split)")
    p.add_argument("--baseline", help="a run directory whose curves give the trend for effective robustness")
    p.add_argument("--held-out", action="append", default=[], metavar="TABLE:MODALITY",
                   help="labelled table whose MODALITY comes from another domain (repeatable), e.g. human.csv:audio")
    p.set_defaults(func=cmd_robustness)

    p = sub.add_parser("report", help="write RUN_DIR/report.html and report.md")
    p.add_argument("run_dir")
    p.add_argument("--robustness", action="store_true", help="compute the robustness curves first")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("evaluate", help="metrics of a trained run on labelled data")
    p.add_argument("run_dir")
    p.add_argument("--data", help="table to evaluate on (default: the run's test split)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predictions of a trained run for new records")
    p.add_argument("run_dir")
    p.add_argument("--data", required=True)
    p.add_argument("--out", default="predictions.csv")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("serve", help="HTTP server of a trained run: /predict, /embed, /metadata, a web page at /")
    p.add_argument("run_dir")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    add_fields(p, ServeSettings)  # every server setting, with its type, default and help
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("validate", help="check the data of a config; exit 1 if training would stop")
    p.add_argument("config")
    p.add_argument("--all", action="store_true", help="also list warnings (empty fields, skipped records)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("export", help="export a trained run to ONNX or TorchScript, with a manifest")
    p.add_argument("run_dir")
    p.add_argument("--format", default="onnx", help="onnx or torchscript")
    p.add_argument("--out", help="output folder (default RUN_DIR/export_<format>)")
    p.add_argument("--opset", type=int, help="ONNX opset (default 18)")
    p.add_argument("--exporter", default="auto", help="ONNX exporter: auto (legacy, then dynamo), dynamo or legacy")
    p.add_argument("--fallback", action="store_true", help="write TorchScript if ONNX export fails")
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


LIGHTNING_COMMANDS = {"train", "quickstart", "compare", "tune", "fit"}
LIGHT_COMMANDS = {"list", "schema", "datasets", "validate"}  # no tensor work: torch threads left alone


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in LIGHTNING_COMMANDS:
        _quiet_lightning()
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
