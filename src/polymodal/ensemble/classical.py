"""Classical models as small torch modules over processor outputs, so that a run stores them as safetensors.

Each is fitted with scikit-learn and then copied into tensors (nothing is pickled):
- `TfidfLinear`: TF-IDF of the text processors' token ids (sublinear term frequency, smoothed idf, L2 norm per
  text modality) followed by a linear model (logistic regression coefficients).
- `TreeEnsemble`: the trees of a fitted `HistGradientBoostingClassifier`/`Regressor` (thresholds on raw values,
  the side missing values go to, leaf values; missing numbers are NaN, as they were when the trees were
  fitted), evaluated level by level for all trees at once.
Both take a model-input Batch and return logits (B, K) in the task's convention (binary: one logit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polymodal.data.batch import Batch


def token_counts(ids: Tensor, mask: Tensor, vocab: int) -> Tensor:
    """(B, V) occurrences of each token id among the real (unmasked) positions."""
    counts = torch.zeros(ids.shape[0], vocab, device=ids.device)
    return counts.scatter_add_(1, ids.clamp(0, vocab - 1), mask.float())  # (B, V)


def pair_counts(ids: Tensor, mask: Tensor, buckets: int) -> Tensor:
    """(B, H) occurrences of each adjacent token pair (word bigram) among the real positions, hashed into H
    buckets."""
    pairs = (ids[:, :-1].long() * 1_000_003 + ids[:, 1:].long()) % buckets  # (B, T-1)
    both = mask[:, :-1].float() * mask[:, 1:].float()  # (B, T-1)
    return torch.zeros(ids.shape[0], buckets, device=ids.device).scatter_add_(1, pairs, both)  # (B, H)


class TfidfLinear(nn.Module):
    """TF-IDF per text modality (its tokens and, with `pairs`, its hashed token bigrams, L2-normalised
    together), concatenated, then `logits = x @ coef.T + intercept`.

    Args:
        vocab: vocabulary size per text modality (in order).
        num_outputs: logits per record (1 for binary).
        pairs: hash buckets of token bigrams per modality (0: tokens only).
    """

    kind = "tfidf_linear"

    def __init__(self, vocab: dict[str, int], num_outputs: int, pairs: int = 0) -> None:
        super().__init__()
        self.vocab, self.pairs = dict(vocab), pairs
        sizes = {k: n for m, v in vocab.items() for k, n in ((m, v), (f"{m}__pairs", pairs)) if n}
        self.idf = nn.ParameterDict({k: nn.Parameter(torch.ones(n), requires_grad=False) for k, n in sizes.items()})
        self.linear = nn.Linear(sum(sizes.values()), num_outputs)
        self.linear.requires_grad_(False)

    def options(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "num_outputs": self.linear.out_features, "pairs": self.pairs}

    def fit_idf(self, counts: dict[str, Tensor]) -> None:
        """Smoothed idf from training counts (N, V) per block: log((1 + N) / (1 + df)) + 1."""
        for k, c in counts.items():
            df = (c > 0).float().sum(0)  # (V,)
            self.idf[k].data = torch.log((1 + c.shape[0]) / (1 + df)) + 1

    def counts(self, batch: Batch) -> dict[str, Tensor]:
        out = {}
        for m, v in self.vocab.items():
            inputs = batch.inputs[m]
            present = batch.present[m].float()[:, None]  # (B, 1)
            out[m] = token_counts(inputs["ids"], inputs["mask"], v) * present  # (B, V)
            if self.pairs:
                out[f"{m}__pairs"] = pair_counts(inputs["ids"], inputs["mask"], self.pairs) * present  # (B, H)
        return out

    def features(self, counts: dict[str, Tensor]) -> Tensor:
        blocks = []
        for m in self.vocab:
            x = torch.cat([torch.log1p(c) * self.idf[k] for k, c in counts.items()
                           if k in (m, f"{m}__pairs")], dim=1)  # (B, V [+ H])
            blocks.append(x / x.norm(dim=1, keepdim=True).clamp_min(1e-12))
        return torch.cat(blocks, dim=1)  # (B, sum)

    def forward(self, batch: Batch) -> Tensor:
        return self.linear(self.features(self.counts(batch)))  # (B, K)


def tree_matrix(batch: Batch, modalities: list[str]) -> Tensor:
    """(B, F): each tabular modality's standardized numbers (NaN where missing, so that trees route missing
    values themselves rather than splitting on the mean they were filled with), missing indicators, and
    category indices."""
    parts = []
    for m in modalities:
        inputs = batch.inputs[m]
        if "numeric" in inputs:
            z, missing = inputs["numeric"].float().chunk(2, dim=1)  # (B, K) each
            parts += [torch.where(missing > 0, torch.full_like(z, float("nan")), z), missing]
        if "categorical" in inputs:
            parts.append(inputs["categorical"].float())
    return torch.cat(parts, dim=1)


class TreeEnsemble(nn.Module):
    """Gradient-boosted trees as padded node tables (T trees, N nodes): `x <= threshold` goes left.

    Args:
        modalities: tabular modalities whose features (in order) the trees split on.
        trees, nodes: table sizes; depth: the deepest leaf; num_outputs: logits per record.
    """

    kind = "trees"

    def __init__(self, modalities: list[str], trees: int, nodes: int, depth: int, num_outputs: int) -> None:
        super().__init__()
        self.modalities, self.depth, self.num_outputs = list(modalities), depth, num_outputs
        for name, dtype in (("feature", torch.long), ("left", torch.long), ("right", torch.long),
                            ("threshold", torch.float64), ("value", torch.float64), ("leaf", torch.bool),
                            ("missing_left", torch.bool)):
            self.register_buffer(name, torch.zeros(trees, nodes, dtype=dtype))
        self.register_buffer("output", torch.zeros(trees, dtype=torch.long))  # which logit each tree adds to
        self.register_buffer("baseline", torch.zeros(num_outputs, dtype=torch.float64))

    def options(self) -> dict[str, Any]:
        t, n = self.feature.shape
        return {"modalities": self.modalities, "trees": t, "nodes": n, "depth": self.depth,
                "num_outputs": self.num_outputs}

    def forward(self, batch: Batch) -> Tensor:
        x = tree_matrix(batch, self.modalities).double()  # (B, F)
        t = torch.arange(self.feature.shape[0], device=x.device)[None, :]  # (1, T)
        node = torch.zeros(x.shape[0], self.feature.shape[0], dtype=torch.long, device=x.device)  # (B, T)
        for _ in range(self.depth):
            xv = x.gather(1, self.feature[t, node])  # (B, T)
            left = (xv <= self.threshold[t, node]) | (xv.isnan() & self.missing_left[t, node])
            step = torch.where(left, self.left[t, node], self.right[t, node])
            node = torch.where(self.leaf[t, node], node, step)
        values = self.value[t, node]  # (B, T)
        raw = self.baseline.expand(x.shape[0], -1).clone()  # (B, K)
        raw.index_add_(1, self.output, values)
        return raw.float()


def trees_from_sklearn(model: Any, modalities: list[str]) -> TreeEnsemble:
    """Copy a fitted HistGradientBoosting model (numeric splits only) into a TreeEnsemble."""
    predictors = [tree for iteration in model._predictors for tree in iteration]
    per_iteration = len(model._predictors[0])
    nodes = max(len(p.nodes) for p in predictors)
    depth = max(int(p.nodes["depth"].max()) for p in predictors)
    module = TreeEnsemble(modalities, len(predictors), nodes, max(depth, 1), per_iteration)
    for i, p in enumerate(predictors):
        n = p.nodes
        for name, key in (("feature", "feature_idx"), ("left", "left"), ("right", "right"),
                          ("threshold", "num_threshold"), ("value", "value"), ("leaf", "is_leaf"),
                          ("missing_left", "missing_go_to_left")):
            getattr(module, name)[i, : len(n)] = torch.from_numpy(np.asarray(n[key]).astype(
                getattr(module, name).numpy().dtype))
        module.leaf[i, len(n):] = True
    module.output.copy_(torch.arange(len(predictors)) % per_iteration)
    module.baseline.copy_(torch.from_numpy(np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)))
    return module


CLASSICAL: dict[str, type[nn.Module]] = {"tfidf_linear": TfidfLinear, "trees": TreeEnsemble}
