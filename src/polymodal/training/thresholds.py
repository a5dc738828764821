"""Per-label decision thresholds of a multilabel run, tuned on the validation split after training."""

from __future__ import annotations

import logging

import numpy as np
import torch

from polymodal.data.dataset import MultimodalDataset
from polymodal.evaluation.inference import predict_outputs
from polymodal.model import MultimodalModel
from polymodal.processors import Processor
from polymodal.tasks import Multilabel

log = logging.getLogger(__name__)
GRID = np.round(np.arange(0.02, 0.99, 0.02), 2)  # candidate thresholds


def best_thresholds(p: np.ndarray, t: np.ndarray) -> list[float]:
    """Per label (columns of p, t: (N, L)), the grid threshold with the highest F1; 0.5 for labels without a
    positive record (ties: the threshold closest to 0.5)."""
    out = []
    for j in range(p.shape[1]):
        if t[:, j].sum() == 0:
            out.append(0.5)
            continue
        hits = p[None, :, j] >= GRID[:, None]  # (G, N)
        tp = (hits & (t[None, :, j] > 0)).sum(1)
        f1 = 2 * tp / (hits.sum(1) + t[:, j].sum())
        best = np.flatnonzero(f1 == f1.max())
        out.append(float(GRID[best[np.argmin(np.abs(GRID[best] - 0.5))]]))
    return out


def tune_thresholds(model: MultimodalModel, task: Multilabel, processors: dict[str, Processor],
                    val: MultimodalDataset) -> list[str]:
    """Set `task.thresholds` from the validation split; returns (and warns about) the labels that still never
    fire on it although they occur there."""
    out, target = predict_outputs(model, processors, val)
    assert target is not None
    p, t = torch.sigmoid(out.logits.float()).cpu().numpy(), target.cpu().numpy()
    task.thresholds = best_thresholds(p, t)
    silent = [c for j, c in enumerate(task.classes)
              if t[:, j].sum() > 0 and not (p[:, j] >= task.thresholds[j]).any()]
    if silent:
        log.warning("%d label(s) never predicted on the validation split even after tuning their thresholds: %s",
                    len(silent), ", ".join(silent[:20]))
    return silent
