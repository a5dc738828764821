"""Hyperparameter search with Optuna (`polymodal tune CONFIG --trials N`).

The config's `tune:` section names a search space over dotted config keys:

    tune:
      space:
        training.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
        fusion.name: {type: categorical, choices: [concat, late]}
      pruner: median

Each trial trains the config with its sampled values (a run directory per trial); the objective is the run's
validation monitor metric (best epoch; direction from the task). With the median pruner, each epoch's value
is reported and a trial falling below the median of earlier trials at that epoch stops early. The study lives
in an Optuna RDB storage (SQLite file in the output folder by default; any SQLAlchemy URL, e.g. PostgreSQL,
shared by several machines) and running the command again continues it. Optuna is imported only here.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from torch import nn

from polymodal.config import Config, ConfigError, SearchParam, dump_config
from polymodal.factory import parse_config
from polymodal.tasks import build_task
from polymodal.training.loop import Callback, Loop, monitored

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)
STORAGE_FILE, BEST, TRIALS = "study.db", "best.yaml", "trials.csv"


@dataclass
class TuneResult:
    """The finished search: best trial, where its config and the trial table were written."""

    study_name: str
    storage: str
    best_value: float
    best_params: dict[str, Any]
    best_config: Path
    trials_csv: Path
    n_trials: int


def set_key(data: dict[str, Any], key: str, value: Any) -> None:
    """`data["training"]["lr"] = value` for key `training.lr`; intermediate mappings are created if absent."""
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"tune.space.{key}: {'.'.join(parts[: i + 1])} is not a section (it holds "
                              f"{child!r}); name a key inside a section, e.g. training.lr")
        node = child
    node[parts[-1]] = value


def base_mapping(config: Config) -> dict[str, Any]:
    """The config as a plain mapping, without its `tune` section (what each trial starts from)."""
    data = config.model_dump(mode="json", exclude={"tune"}, exclude_none=True)
    return data


def with_params(config: Config, params: dict[str, Any], origin: str, output_dir: str | None = None) -> Config:
    data = copy.deepcopy(base_mapping(config))
    for key, value in params.items():
        set_key(data, key, value)
    if output_dir is not None:
        data["output_dir"] = output_dir
    return parse_config(data, origin=origin)


def probe_values(param: SearchParam) -> list[Any]:
    """Values that must each give a valid config: both ends of a range, every choice."""
    if param.type == "categorical":
        return list(param.choices or [])
    cast = int if param.type == "int" else float
    return [cast(param.low), cast(param.high)]  # type: ignore[arg-type]


def check_space(config: Config) -> dict[str, SearchParam]:
    """The search space, after checking that every key exists and every end/choice validates."""
    if config.tune is None:
        raise ConfigError("tune: the config has no `tune:` section; add one with a `space`, e.g.\n"
                          "tune:\n  space:\n    training.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}")
    for key, param in config.tune.space.items():
        for value in probe_values(param):
            try:
                with_params(config, {key: value}, origin=f"tune.space.{key} = {value!r}")
            except ConfigError as err:
                raise ConfigError(f"tune.space.{key}: the value {value!r} does not give a valid config "
                                  f"(is the key spelled right?)\n{err}") from None
    return dict(config.tune.space)


def suggest(trial: optuna.Trial, key: str, param: SearchParam) -> Any:
    if param.type == "categorical":
        return trial.suggest_categorical(key, param.choices)  # type: ignore[arg-type]
    if param.type == "int":
        step = int(param.step or 1)
        return trial.suggest_int(key, int(param.low), int(param.high), step=step, log=param.log)  # type: ignore[arg-type]
    return trial.suggest_float(key, float(param.low), float(param.high), step=param.step,  # type: ignore[arg-type]
                               log=param.log)


class PruningCallback(Callback):
    """Reports the monitored validation metric to the trial after each validation; raises TrialPruned when
    the pruner says so."""

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial = trial
        self.monitor = monitor

    def on_validation_end(self, loop: Loop, module: nn.Module) -> None:
        import optuna

        if self.monitor not in loop.callback_metrics:
            return
        epoch = loop.current_epoch
        self.trial.report(float(loop.callback_metrics[self.monitor]), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"epoch {epoch}: {self.monitor} below the median of earlier trials")


def best_logged(run_dir: Path, monitor: str, mode: str) -> float:
    """The best value of the monitored metric over a run's epochs (what its checkpoint was chosen by)."""
    log_csv = run_dir / "logs" / "metrics.csv"
    values = pd.read_csv(log_csv)[monitor].dropna() if log_csv.is_file() else pd.Series(dtype=float)
    if values.empty:
        raise ValueError(f"{run_dir}: no {monitor!r} was logged; set training.monitor to a validation metric")
    return float(values.max() if mode == "max" else values.min())


def make_study(config: Config, storage: str, study_name: str, seed: int, mode: str) -> optuna.Study:
    import optuna

    assert config.tune is not None
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if config.tune.pruner == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=config.tune.startup_trials,
                                             n_warmup_steps=config.tune.warmup_epochs)
    return optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True,
                               direction="maximize" if mode == "max" else "minimize",
                               sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)


def tune(config: Config, trials: int, out: Path | None = None, storage: str | None = None,
         study_name: str | None = None, timeout: float | None = None) -> TuneResult:
    """Run `trials` more trials of the config's search (continuing the study if it exists) and write
    `best.yaml` (the best trial's whole config) and `trials.csv` into `out`."""
    import optuna

    space = check_space(config)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(out or f"runs/tune_{config.name}")
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / STORAGE_FILE).resolve()}"
    study_name = study_name or config.name
    existing = _count_trials(storage, study_name)
    monitor, mode = monitored(config.training, build_task(config.target))
    study = make_study(config, storage, study_name, config.training.seed + existing, mode)  # new draws on resume

    def objective(trial: optuna.Trial) -> float:
        from polymodal.training.fit import train

        params = {key: suggest(trial, key, param) for key, param in space.items()}
        run_dir = out / f"trial_{trial.number:03d}"
        trial_config = with_params(config, params, origin=f"trial {trial.number}", output_dir=str(run_dir))
        train(trial_config, callbacks=[PruningCallback(trial, monitor)])
        return best_logged(run_dir, monitor, mode)

    study.optimize(objective, n_trials=trials, timeout=timeout, catch=(ValueError, RuntimeError))
    return write_outputs(config, study, out, storage)


def _count_trials(storage: str, study_name: str) -> int:
    import optuna

    try:
        return len(optuna.load_study(study_name=study_name, storage=storage).trials)
    except KeyError:  # no such study yet
        return 0


def write_outputs(config: Config, study: optuna.Study, out: Path, storage: str) -> TuneResult:
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ValueError(f"study {study.study_name!r}: no trial has finished yet (see {out / TRIALS} for their "
                         "states; failed trials log their error)")
    frame = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration"))
    frame.to_csv(out / TRIALS, index=False)
    best = study.best_trial
    best_config = with_params(config, best.params, origin=f"best trial {best.number}",
                              output_dir=str(out / "best"))
    dump_config(best_config, out / BEST)
    return TuneResult(study.study_name, storage, float(best.value), dict(best.params),  # type: ignore[arg-type]
                      out / BEST, out / TRIALS, len(study.trials))
