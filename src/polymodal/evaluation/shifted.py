"""Shifted modality: what a fused model does when one of its modalities stops looking like its training data.

For each modality m of a run, and each shift of m (every corruption of its type at each severity, and held-out
tables whose m comes from another domain, e.g. AV-Digits' `human.csv` with real voices):
- `score`: the run's main metric on the shifted data;
- `unaffected`: the best score of a model that does not read m, so the shift cannot hurt it: the run itself
  with m treated as missing for every record, and any baseline runs given (e.g. unimodal models) without m;
  `unaffected_model` names which;
- `auroc`: how well the reliability score of m (`evaluation.reliability`, calibrated on the validation split)
  ranks the shifted records above the clean ones (0.5 = no better than chance, 1 = perfect);
- `flagged`: the share of the shifted records whose m is flagged `ood` (over the 95% line of the validation
  records), and `false_alarms`: the same share of the clean records (5% on the validation split by construction).
A fused model that trusts a shifted modality anyway scores below `unaffected`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.dataset import MultimodalDataset, decode, raise_on_fatal
from polymodal.data.sources import Table, read_table, table_root
from polymodal.evaluation.corruptions import CORRUPTIONS
from polymodal.evaluation.inference import frozen_features, output_metrics, predict_outputs
from polymodal.evaluation.reliability import (
    VIEWS,
    ModalityReference,
    calibrate,
    calibrated_views,
    detection_auroc,
    load_reliability,
    record_distance,
)
from polymodal.evaluation.robustness import corrupted_dataset, load_table, raw_values
from polymodal.features.cache import carry_features
from polymodal.rundir import Run, load_run

SHIFTED = "shifted_modality.csv"


def held_out_table(path: str | Path) -> Table:
    """A labelled table from a path (files resolved against its folder)."""
    return Table(read_table(Path(path)), table_root(Path(path)), Path(path).name)


def dataset_of(run: Run, table: Table) -> MultimodalDataset:
    """`table` decoded for the run, with its frozen encoders' stored outputs in place of their inputs."""
    decoded = decode(table, run.processors, run.task)
    raise_on_fatal(decoded)
    dataset = MultimodalDataset(decoded, {m: p.ragged for m, p in run.processors.items()})
    return frozen_features(run.config, run.model, run.processors, dataset)


def score_and_distance(run: Run, dataset: MultimodalDataset, refs: Mapping[str, ModalityReference],
                       drop: frozenset[str] = frozenset()) -> tuple[float, dict[str, np.ndarray]]:
    """The run's main metric on a labelled dataset and each modality's reliability score (NaN if missing)."""
    out, target = predict_outputs(run.model, run.processors, dataset, drop=drop)
    assert target is not None
    score = output_metrics(run.task, out, target)[run.task.monitor]
    dist = {m: np.where(dataset.present[m], record_distance(ref, out, m), np.nan) for m, ref in refs.items()}
    return score, dist


def unaffected(run: Run, modality: str, dataset: MultimodalDataset, table: Table,
               baselines: Sequence[Run]) -> tuple[float, str]:
    """The best score on `table` (decoded for the run: `dataset`) of a model blind to `modality`: the run
    without it, or a baseline without it."""
    candidates = {f"{run.path.name} without {modality}":
                  score_and_distance(run, dataset, {}, frozenset({modality}))[0]}
    for base in baselines:
        if modality not in base.processors:
            candidates[base.path.name] = score_and_distance(base, dataset_of(base, table), {})[0]
    best = max(candidates, key=lambda k: candidates[k] if run.task.mode == "max" else -candidates[k])
    return candidates[best], best


def references(run: Run) -> dict[str, ModalityReference]:
    """The run's reliability calibration, or one made now from its validation split (as the clean records are
    evaluated: frozen encoders' stored outputs) if it has none, or if it was made before the `stats` view and
    an encoder gives stats."""
    refs = load_reliability(run.path, required=False)
    if refs and calibrated_views(run.path) >= set(VIEWS):
        return refs
    from polymodal.evaluation.contribution import split_dataset

    val = frozen_features(run.config, run.model, run.processors, split_dataset(run, "val"))
    fresh = calibrate(run.model, run.processors, val)
    return fresh if not refs or any(len(r.views) > 1 for r in fresh.values()) else refs


def shifted_modality(run: Run, table: Table, severities: Iterable[int] = range(1, 6),
                     held_out: Mapping[str, tuple[Table, str]] | None = None, baselines: Sequence[Run] = (),
                     seed: int = 0) -> pd.DataFrame:
    """One row per (modality, shift, severity): score, unaffected, unaffected_model, auroc (module docstring).

    Args:
        run: a loaded run.
        table: labelled in-distribution records (the run's test split).
        severities: corruption severities (1..5).
        held_out: name -> (labelled table, the modality that comes from another domain in it).
        baselines: other runs (e.g. unimodal models) that may be blind to a shifted modality.
        seed: seed of the per-record corruption draws.
    """
    refs = references(run)
    decoded = decode(table, run.processors, run.task)
    raise_on_fatal(decoded)
    clean_set = frozen_features(run.config, run.model, run.processors,  # frozen encoders: their stored outputs
                                MultimodalDataset(decoded, {m: p.ragged for m, p in run.processors.items()}))
    _, clean_dist = score_and_distance(run, clean_set, refs)
    rows = []
    for m, proc in run.processors.items():
        best, name = unaffected(run, m, clean_set, table, baselines)
        raws = {m: raw_values(table, proc, decoded, m)}
        for corruption in CORRUPTIONS.get(proc.kind, {}):
            for s in sorted(set(severities) - {0}):
                shifted = carry_features(clean_set, corrupted_dataset(  # only m's encoder runs
                    decoded, run.processors, raws, {m: (corruption, s)}, seed), {m})
                score, dist = score_and_distance(run, shifted, refs)
                rows.append(_row(m, corruption, s, score, best, name, *_detection(refs, clean_dist, dist, m)))
    for shift, (other, m) in (held_out or {}).items():
        other_set = dataset_of(run, other)
        score, dist = score_and_distance(run, other_set, refs)
        best, name = unaffected(run, m, other_set, other, baselines)
        rows.append(_row(m, shift, 0, score, best, name, *_detection(refs, clean_dist, dist, m)))
    return pd.DataFrame(rows, columns=["modality", "shift", "severity", "score", "unaffected", "unaffected_model",
                                       "auroc", "flagged", "false_alarms"])


def _detection(refs: Mapping[str, ModalityReference], clean: Mapping[str, np.ndarray],
               shifted: Mapping[str, np.ndarray], modality: str) -> tuple[float, float, float]:
    """(auroc, flagged, false_alarms) of the modality's reliability score (NaN without a calibration)."""
    if modality not in clean:
        return float("nan"), float("nan"), float("nan")
    line = refs[modality].threshold
    return (detection_auroc(clean[modality], shifted[modality]), _share_over(shifted[modality], line),
            _share_over(clean[modality], line))


def _share_over(distance: np.ndarray, line: float) -> float:
    """The share of the records with the modality (distance not NaN) whose distance is over `line`."""
    present = distance[~np.isnan(distance)]
    return float((present > line).mean()) if len(present) else float("nan")


def _row(modality: str, shift: str, severity: int, score: float, best: float, name: str,
         auroc: float, flagged: float, false_alarms: float) -> dict[str, Any]:
    return {"modality": modality, "shift": shift, "severity": severity, "score": score, "unaffected": best,
            "unaffected_model": name, "auroc": auroc, "flagged": flagged, "false_alarms": false_alarms}


def parse_held_out(spec: str, run: Run) -> tuple[str, tuple[Table, str]]:
    """`TABLE:MODALITY` (a labelled table whose MODALITY comes from another domain) -> (name, (table, modality))."""
    path, sep, modality = spec.rpartition(":")
    if not sep or not path:
        raise ValueError(f"--held-out expects TABLE:MODALITY (e.g. human.csv:audio), got {spec!r}")
    if modality not in run.processors:
        raise ValueError(f"--held-out {spec!r}: {modality!r} is not a modality of this run; it has "
                         f"{', '.join(run.processors)}")
    return Path(path).stem, (held_out_table(path), modality)


def run_shifted(run_dir: str | Path, data: str | Path | None = None, baseline: str | Path | None = None,
                held_out: Sequence[str] = (), out: str | Path | None = None, seed: int = 0) -> pd.DataFrame:
    """`shifted_modality` on a run's test split (or `data`), written to `shifted_modality.csv` in `out`
    (default: the run directory); `held_out` are `TABLE:MODALITY` specs, `baseline` a run directory."""
    run = load_run(run_dir)
    held = dict(parse_held_out(spec, run) for spec in held_out)
    rows = shifted_modality(run, load_table(run, data), held_out=held, seed=seed,
                            baselines=[load_run(baseline)] if baseline is not None else [])
    folder = Path(out) if out is not None else Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    rows.to_csv(folder / SHIFTED, index=False)
    return rows
