"""Per-record, per-modality reliability: is this modality's input like what the model was validated on?

Each modality is seen in up to two views, each with its own Gaussian reference fitted on the validation split:
- `pooled`: the encoder's pooled features;
- `stats`: the encoder's low-level input statistics (`EncoderOutput.stats`; the CNNs: per-channel mean and std
  of their first convolution's output), for encoders that give them.
A view's reference is its class means (the record's class when the task has single-label classes, else one
mean) and a shared covariance, shrunk towards a scaled identity (by at least 0.1, more when validation records
are few compared with the width; Lee, Lee, Lee and Shin, "A Simple Unified Framework for Detecting
Out-of-Distribution Samples and Adversarial Attacks", NeurIPS 2018: the squared Mahalanobis distance to the
closest class-conditional Gaussian). A record's modality is scored on its `stats` view where the encoder gives
one (that distance divided by the view's validation threshold, below), else on the pooled view.
The low-level view is the score because some corruptions leave the pooled features typical, or make them look
more typical than clean inputs (an encoder trained to ignore noise maps a noisy image or clipped audio close to a
class mean), while the statistics of what the first layer sees (its energy per filter) move far away. Taking the
larger of the two views' ratios (Lee et al. combine layers too, with weights learned on out-of-distribution
examples, which are not available here) ranked worse on the AV-Digits shifts it was measured on, human voices included
(and better on none): the clean records' pooled distances, which such corruptions make look typical, dominate it
(docs/reliability.md). The pooled view is kept: the `reliable` fusion's gates read it.
A record's modality gets
- `distance`: its score;
- `reliability`: the fraction of validation records scoring at least that much (an empirical p-value in
  [0, 1]: 1 = as typical as any validation record, 0 = further out than all of them);
- `ood`: score above the validation scores' `quantile` (0.95 by default: 5% false alarms in distribution).
This works for every fusion (it reads encoder outputs only). Fusions with their own per-modality uncertainty
(tmc: Dirichlet uncertainty mass, qmf: energy, reliable: 1 - its gate weight) add it as `uncertainty`. The
calibration is stored in the run directory as tensors (`reliability.safetensors`; precisions in float32, which
is what every distance is computed with), written at the end of training, and the pooled view is handed to the
fusion (`Fusion.calibrate`) before the weights are saved: the `reliable` fusion gates each modality by it at
prediction time. Files written before the low-level view existed hold the pooled view only and give its scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from torch import Tensor

from polymodal.data.dataset import MultimodalDataset
from polymodal.evaluation.inference import predict_outputs
from polymodal.fusion.base import Calibration
from polymodal.metrics import auroc
from polymodal.model import MultimodalModel
from polymodal.output import Output
from polymodal.processors import Processor

RELIABILITY = "reliability.safetensors"
SHRINKAGE = 0.1
MIN_RECORDS = 2
POOLED, STATS = "pooled", "stats"  # the views of a modality's input (module docstring)
VIEWS = (POOLED, STATS)  # the views a calibration written now looks for (recorded in the file's metadata)


@dataclass
class Reference:
    """One view's validation statistics: class means (C, D), shared precision (D, D), sorted distances (N,), and
    the distance at the calibration quantile."""

    means: np.ndarray
    precision: np.ndarray
    distances: np.ndarray
    threshold: float

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.means": self.means, f"{prefix}.precision": self.precision,
                f"{prefix}.distances": self.distances, f"{prefix}.threshold": np.asarray([self.threshold])}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str) -> Reference:
        return cls(arrays[f"{prefix}.means"], arrays[f"{prefix}.precision"], arrays[f"{prefix}.distances"],
                   float(arrays[f"{prefix}.threshold"][0]))


@dataclass
class ModalityReference:
    """One modality's calibration: a Reference per view (`pooled`, and `stats` where the encoder gives them).

    The score reads the stats view where there is one, in units of that view's threshold (so that an output
    without stats, scored on its pooled view in the units of that view's threshold, is comparable); with the
    pooled view alone, the plain distance. `distances` and `threshold` are the score's validation distribution.
    """

    views: dict[str, Reference]

    @property
    def pooled(self) -> Reference:
        return self.views[POOLED]

    @property
    def scored(self) -> str:
        return STATS if STATS in self.views else POOLED

    def unit(self, view: str) -> float:
        """What a distance of `view` is divided by in the score: 1 with the pooled view alone, else its threshold."""
        return 1.0 if len(self.views) == 1 else max(self.views[view].threshold, 1e-12)

    @property
    def distances(self) -> np.ndarray:
        return self.views[self.scored].distances / self.unit(self.scored)

    @property
    def threshold(self) -> float:
        return self.views[self.scored].threshold / self.unit(self.scored)

    def arrays(self, modality: str) -> dict[str, np.ndarray]:
        """The pooled view under `<modality>.<name>` (as before other views existed), any other view under
        `<modality>@<view>.<name>`."""
        arrays = self.pooled.arrays(modality)
        for view, ref in self.views.items():
            if view != POOLED:
                arrays |= ref.arrays(f"{modality}@{view}")
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], modality: str) -> ModalityReference:
        """Read back `arrays`; a file with the pooled view only gives the pooled view's scores."""
        views = {POOLED: Reference.from_arrays(arrays, modality)}
        if f"{modality}@{STATS}.means" in arrays:
            views[STATS] = Reference.from_arrays(arrays, f"{modality}@{STATS}")
        return cls(views)


def class_groups(target: np.ndarray | None, n: int) -> np.ndarray:
    """(N,) group of each record: its class index for single-label classification targets, else 0."""
    if target is None or target.ndim != 1 or target.dtype.kind not in "iu" or len(target) != n:
        return np.zeros(n, dtype=np.int64)
    return target.astype(np.int64)


def fit_reference(features: np.ndarray, groups: np.ndarray, quantile: float = 0.95) -> Reference:
    """Class means, shrunk shared covariance and the validation distances of features (N, D)."""
    labels = np.unique(groups)
    means = np.stack([features[groups == g].mean(0) for g in labels])  # (C, D)
    centred = features - means[np.searchsorted(labels, groups)]  # (N, D)
    cov = centred.T @ centred / max(1, len(features) - len(labels))  # (D, D)
    scale = max(float(np.trace(cov)) / cov.shape[0], 1e-12)
    shrink = max(SHRINKAGE, cov.shape[0] / (len(features) + cov.shape[0]))  # more when records are few
    shrunk = (1 - shrink) * cov + shrink * scale * np.eye(cov.shape[0])
    ref = Reference(means, np.linalg.inv(shrunk).astype(np.float32), np.zeros(0), 0.0)  # float32: as stored
    ref.distances = np.sort(mahalanobis(ref, features))
    ref.threshold = float(np.quantile(ref.distances, quantile))
    return ref


def mahalanobis(ref: Reference, features: np.ndarray) -> np.ndarray:
    """(N,) squared Mahalanobis distance of features (N, D) to the closest class mean."""
    diff = features[:, None, :] - ref.means[None]  # (N, C, D)
    return np.einsum("ncd,de,nce->nc", diff, ref.precision, diff).min(1)


def view_inputs(out: Output, modality: str) -> dict[str, np.ndarray]:
    """The modality's views in `out` (N, D_view): pooled features, and the encoder's stats where it has them."""
    views = {POOLED: out.features[modality]}
    if modality in out.stats:
        views[STATS] = out.stats[modality]
    return {v: x.double().cpu().numpy() for v, x in views.items()}


def record_distance(ref: ModalityReference, out: Output, modality: str) -> np.ndarray:
    """(N,) each record's score for the modality (ModalityReference): on the stats view where the calibration and
    `out` have it, else on the pooled view (a frozen encoder's stored outputs carry no stats)."""
    view = STATS if ref.scored == STATS and modality in out.stats else POOLED
    x = (out.stats if view == STATS else out.features)[modality].double().cpu().numpy()
    return mahalanobis(ref.views[view], x) / ref.unit(view)


def fit_modality(inputs: Mapping[str, np.ndarray], groups: np.ndarray, quantile: float = 0.95
                 ) -> ModalityReference:
    """A Reference per view of the validation records' inputs (N, D_view)."""
    return ModalityReference({v: fit_reference(x, groups, quantile) for v, x in inputs.items()})


def p_value(ref: Reference | ModalityReference, distance: np.ndarray) -> np.ndarray:
    """(N,) fraction of validation distances >= each distance."""
    below = np.searchsorted(ref.distances, distance, side="left")
    return (len(ref.distances) - below) / len(ref.distances)


def calibrate(model: MultimodalModel, processors: Mapping[str, Processor], dataset: MultimodalDataset,
              quantile: float = 0.95) -> dict[str, ModalityReference]:
    """A ModalityReference per modality from the validation dataset (modalities with < 2 present records: none)."""
    out, target = predict_outputs(model, processors, dataset)
    return references_of(out, target, dataset, quantile)


def references_of(out: Output, target: Tensor | None, dataset: MultimodalDataset,
                  quantile: float = 0.95) -> dict[str, ModalityReference]:
    """A ModalityReference per modality from the model's outputs on `dataset` (modalities with < 2 present
    records: none)."""
    groups = class_groups(None if target is None else target.cpu().numpy(), len(dataset))
    refs = {}
    for m in out.features:
        keep = np.asarray(dataset.present[m], dtype=bool)
        if keep.sum() >= MIN_RECORDS:
            inputs = {v: x[keep] for v, x in view_inputs(out, m).items()}
            refs[m] = fit_modality(inputs, groups[keep], quantile)
    return refs


def fusion_calibration(refs: Mapping[str, ModalityReference], out: Output, target: Tensor | None,
                       dataset: MultimodalDataset) -> Calibration:
    """What the fusion may calibrate on: the pooled view's references as tensors (the fusion computes pooled
    distances inside the model), the per-modality logits and the classes."""
    single = target is not None and target.dim() == 1 and not target.dtype.is_floating_point
    pooled = {m: r.pooled for m, r in refs.items()}
    return Calibration(means={m: torch.as_tensor(r.means, dtype=torch.float32) for m, r in pooled.items()},
                       precision={m: torch.as_tensor(r.precision, dtype=torch.float32) for m, r in pooled.items()},
                       distances={m: torch.as_tensor(r.distances) for m, r in pooled.items()},
                       modality_logits=None if out.modality_logits is None else
                       {m: v.detach().cpu() for m, v in out.modality_logits.items()},
                       present={m: torch.as_tensor(np.asarray(p, dtype=bool)) for m, p in dataset.present.items()},
                       target=target.cpu() if single and target is not None else None)


def write_reliability(run_dir: Path, refs: Mapping[str, ModalityReference]) -> None:
    """`reliability.safetensors`: each modality's arrays (`ModalityReference.arrays`)."""
    arrays = {k: np.ascontiguousarray(v) for m, r in refs.items() for k, v in r.arrays(m).items()}
    save_file(arrays, str(run_dir / RELIABILITY), metadata={"views": ",".join(VIEWS)})


def calibrated_views(run_dir: Path) -> frozenset[str]:
    """The views that the run's calibration looked for (a modality has those its encoder gives); files written
    before the stats view existed: pooled only."""
    with safe_open(str(run_dir / RELIABILITY), "np") as f:
        metadata = f.metadata() or {}
    return frozenset(metadata.get("views", POOLED).split(","))


def calibrate_run(run_dir: Path, model: MultimodalModel, processors: Mapping[str, Processor],
                  dataset: MultimodalDataset, task: str) -> None:
    """Write the run's `reliability.safetensors` from its validation dataset and calibrate the model's fusion on it
    (before its weights are saved: a fusion may keep calibration buffers); not for generation, nor without
    records."""
    if task == "generation" or not len(dataset):
        return
    out, target = predict_outputs(model, processors, dataset)
    refs = references_of(out, target, dataset)
    model.fusion.calibrate(fusion_calibration(refs, out, target, dataset))
    write_reliability(run_dir, refs)


def load_reliability(run_dir: Path, required: bool = True) -> dict[str, ModalityReference]:
    """The run's calibration by modality; without `reliability.safetensors`, an error (or {} if not `required`)."""
    path = run_dir / RELIABILITY
    if not path.is_file() and not required:
        return {}
    if not path.is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} has no {RELIABILITY} (runs trained before reliability existed); "
                                "train the run again to get per-modality reliability")
    arrays = load_file(str(path))
    return {m: ModalityReference.from_arrays(arrays, m) for m in file_modalities(arrays)}


def file_modalities(arrays: Mapping[str, np.ndarray]) -> list[str]:
    """The modalities of a calibration file: key prefixes other than `<modality>@<view>` of another prefix."""
    prefixes = {k.rsplit(".", 1)[0] for k in arrays}
    return sorted(p for p in prefixes if p.rpartition("@")[0] not in prefixes)


def modality_reliability(refs: Mapping[str, ModalityReference], out: Output, present: Mapping[str, np.ndarray]
                         ) -> dict[str, pd.DataFrame]:
    """Per modality, one row per record: distance, reliability, ood (and the fusion's uncertainty where it has
    one); NaN (and ood False) where the record lacks the modality."""
    frames = {}
    for m, ref in refs.items():
        keep = np.asarray(present[m], dtype=bool)
        distance = np.where(keep, record_distance(ref, out, m), np.nan)
        frame = pd.DataFrame({"distance": distance,
                              "reliability": np.where(keep, p_value(ref, np.nan_to_num(distance)), np.nan),
                              "ood": keep & (np.nan_to_num(distance) > ref.threshold)})
        if out.uncertainty is not None and m in out.uncertainty:
            frame["uncertainty"] = out.uncertainty[m].float().cpu().numpy()
        frames[m] = frame
    return frames


def reliability_columns(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The per-modality frames side by side as columns `<field>_<modality>` (reliability_audio, ood_audio...)."""
    parts = [frame.add_suffix(f"_{m}") for m, frame in frames.items()]
    return pd.concat(parts, axis=1) if parts else pd.DataFrame()


def reliability_records(refs: Mapping[str, ModalityReference], out: Output, present: Mapping[str, np.ndarray]
                        ) -> list[dict[str, dict[str, Any]]]:
    """Per record, per modality: {"reliability": ..., "ood": ..., ...} with None for NaN (JSON-ready)."""
    frames = modality_reliability(refs, out, present)
    n = len(next(iter(frames.values()))) if frames else 0
    return [{m: {k: _plain(v) for k, v in frame.iloc[i].items()} for m, frame in frames.items()} for i in range(n)]


def with_reliability(run_dir: Path, predictions: np.ndarray, out: Output,
                     present: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Column `prediction` and the run's per-modality reliability columns, one row per record."""
    frames = modality_reliability(load_reliability(run_dir), out, present)
    return pd.concat([pd.DataFrame({"prediction": predictions}), reliability_columns(frames)], axis=1)


def _plain(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    value = float(value)
    return None if np.isnan(value) else value


def detection_auroc(clean: np.ndarray, shifted: np.ndarray) -> float:
    """AUROC of a score that should be higher on shifted records than on clean ones (ties count half); NaN
    values are left out, and NaN is returned when either side is then empty."""
    clean, shifted = clean[~np.isnan(clean)], shifted[~np.isnan(shifted)]
    if not len(clean) or not len(shifted):
        return float("nan")
    scores = torch.as_tensor(np.concatenate([clean, shifted]))
    return float(auroc(scores, torch.arange(len(scores)) >= len(clean)))
