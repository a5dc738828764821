"""Task retrieval: a shared embedding space, scored by recall@k in both directions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import permutations
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from torch import Tensor

from polymodal.tasks.base import TASKS, Task

if TYPE_CHECKING:
    pass

@TASKS.register("retrieval")
class Retrieval(Task):
    """Two or more towers (an encoder plus the contrastive projection per modality) into one embedding space.

    Reads no labels: the contrastive objective (the config adds one when none is listed) learns from which
    modalities belong to the same record. A retrieval run on unlabeled records is therefore also how
    polymodal pretrains self-supervised: encoders through the contrastive (and any dcca) objective, the fusion
    through a reconstruction objective; a labelled run then starts from it with `training.init_from`.
    The task loss is zero; metrics are R@1/5/10 and the median rank for every ordered pair of modalities
    (`a_to_b_r1`, ..., `a_to_b_median_rank`) plus `mean_recall`, the mean of all R@k.
    """

    name = "retrieval"
    monitor = "mean_recall"
    ks: ClassVar[tuple[int, ...]] = (1, 5, 10)

    @property
    def fields(self) -> list[str]:
        return []

    def values(self, frame: Any) -> list[Any]:
        return [None] * len(frame)

    def fit(self, values: list[Any]) -> None:
        """Nothing to learn from labels."""

    def encode(self, value: Any) -> np.ndarray:
        return np.zeros(0, dtype=np.float32)

    @property
    def num_outputs(self) -> int:
        return 0

    def loss(self, logits: Tensor, target: Tensor | None) -> Tensor:
        return logits.sum() * 0.0  # (B, 0) logits: a zero that still backpropagates

    def predict(self, logits: Tensor) -> list[Any]:
        raise ValueError("a retrieval run predicts no labels; use Predictor.embed(modality=...) or "
                         "Predictor.retrieve")

    def metrics(self, logits: Tensor, target: Tensor | None,
                embeddings: Mapping[str, Tensor] | None = None) -> dict[str, float]:
        if embeddings is None:
            raise ValueError("retrieval metrics need the contrastive embeddings (Output.embeddings)")
        out: dict[str, float] = {}
        for a, b in permutations(embeddings, 2):
            za, zb = embeddings[a].float(), embeddings[b].float()
            both = ~(za.isnan().any(dim=1) | zb.isnan().any(dim=1))  # (N,)
            if bool(both.any()):
                out.update(retrieval_metrics(za[both] @ zb[both].T, f"{a}_to_{b}", self.ks))
        recalls = [v for k, v in out.items() if not k.endswith("_median_rank")]
        out["mean_recall"] = float(np.mean(recalls)) if recalls else float("nan")
        return out


def retrieval_ranks(similarity: Tensor) -> Tensor:
    """1-based rank of the matching candidate (the diagonal) for each query row of an (N, N) similarity.

    Ties count against the query (pessimistic rank): every other candidate scoring at least as high as the
    match ranks above it, so a collapsed embedding (all rows equal) ranks every match last.
    """
    return (similarity >= similarity.diagonal()[:, None]).sum(dim=1)  # (N,) the match counts itself


def retrieval_metrics(similarity: Tensor, prefix: str, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Recall@k for each k and the median rank, from an (N, N) query x candidate similarity.

    The median rank is a whole rank, as open_clip reports it: the median rounded down (between the two middle
    ranks of an even count, no interpolated half).
    """
    ranks = retrieval_ranks(similarity).float()
    out = {f"{prefix}_r{k}": (ranks <= k).float().mean().item() for k in ks}
    out[f"{prefix}_median_rank"] = float(math.floor(ranks.quantile(0.5).item()))
    return out

