"""Classical models as small torch modules over processor outputs, so that a run stores them as safetensors.

Each is fitted with scikit-learn and then copied into tensors (nothing is pickled):
- `TfidfLinear`: TF-IDF of the text processors' token ids (sublinear term frequency, smoothed idf, L2 norm per
  text modality) followed by a linear model (logistic regression coefficients).
- `Forest`: the trees of a fitted `RandomForestClassifier`/`Regressor` (the same node tables, a class-fraction
  or value vector per node), averaged.
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
    together), concatenated, then `logits = x @ coef.T + intercept`. With `joint`, the text modalities share one
    vocabulary (their processors hold the same tokenizer): their counts are added up into one block, as if the
    columns were one text, so a word weighs the same wherever it occurs.

    Args:
        vocab: vocabulary size per text modality (in order; `joint`: all equal).
        num_outputs: logits per record (1 for binary).
        pairs: hash buckets of token bigrams per block (0: tokens only).
        joint: one block for all modalities instead of one per modality.
    """

    kind = "tfidf_linear"

    def __init__(self, vocab: dict[str, int], num_outputs: int, pairs: int = 0, joint: bool = False) -> None:
        super().__init__()
        self.vocab, self.pairs, self.joint = dict(vocab), pairs, joint
        if joint and len(set(vocab.values())) > 1:
            raise ValueError(f"a joint TF-IDF needs one vocabulary for every text modality; sizes: {vocab}")
        sizes = {k: n for b, ms in self.blocks().items() for k, n in ((b, vocab[ms[0]]), (f"{b}__pairs", pairs))
                 if n}
        self.idf = nn.ParameterDict({k: nn.Parameter(torch.ones(n), requires_grad=False) for k, n in sizes.items()})
        self.linear = nn.Linear(sum(sizes.values()), num_outputs)
        self.linear.requires_grad_(False)

    def blocks(self) -> dict[str, list[str]]:
        """Feature blocks (each L2-normalised on its own) and the modalities counted into each."""
        return {"joint": list(self.vocab)} if self.joint else {m: [m] for m in self.vocab}

    def options(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "num_outputs": self.linear.out_features, "pairs": self.pairs,
                "joint": self.joint}

    def fit_idf(self, counts: dict[str, Tensor]) -> None:
        """Smoothed idf from training counts (N, V) per block: log((1 + N) / (1 + df)) + 1."""
        for k, c in counts.items():
            df = (c > 0).float().sum(0)  # (V,)
            self.idf[k].data = torch.log((1 + c.shape[0]) / (1 + df)) + 1

    def counts(self, batch: Batch) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for block, modalities in self.blocks().items():
            for m in modalities:
                inputs = batch.inputs[m]
                present = batch.present[m].float()[:, None]  # (B, 1)
                parts = {block: token_counts(inputs["ids"], inputs["mask"], self.vocab[m]) * present}  # (B, V)
                if self.pairs:
                    parts[f"{block}__pairs"] = pair_counts(inputs["ids"], inputs["mask"], self.pairs) * present
                for k, c in parts.items():
                    out[k] = out[k] + c if k in out else c
        return out

    def features(self, counts: dict[str, Tensor]) -> Tensor:
        blocks = []
        for b in self.blocks():
            x = torch.cat([torch.log1p(c) * self.idf[k] for k, c in counts.items()
                           if k in (b, f"{b}__pairs")], dim=1)  # (B, V [+ H])
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


NODE_TABLES = (("feature", torch.long), ("left", torch.long), ("right", torch.long), ("threshold", torch.float64),
               ("leaf", torch.bool), ("missing_left", torch.bool))


def descend(trees: nn.Module, x: Tensor) -> Tensor:
    """(B, T): the leaf each record reaches in each tree of `trees`' node tables (`feature`, `threshold`, `left`,
    `right`, `leaf`, `missing_left`, all (T, N)); `x <= threshold` goes left, NaN goes the stored side."""
    t = torch.arange(trees.feature.shape[0], device=x.device)[None, :]  # (1, T)
    node = torch.zeros(x.shape[0], trees.feature.shape[0], dtype=torch.long, device=x.device)  # (B, T)
    for _ in range(trees.depth):
        xv = x.gather(1, trees.feature[t, node])  # (B, T)
        left = (xv <= trees.threshold[t, node]) | (xv.isnan() & trees.missing_left[t, node])
        step = torch.where(left, trees.left[t, node], trees.right[t, node])
        node = torch.where(trees.leaf[t, node], node, step)
    return node


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
        for name, dtype in (*NODE_TABLES, ("value", torch.float64)):
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
        values = self.value[t, descend(self, x)]  # (B, T)
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


class Forest(nn.Module):
    """A random forest as padded node tables (T trees, N nodes) with a value vector (K) per node: the mean of
    the leaves' values. Classes: the leaves hold class fractions, returned as log-probabilities (binary: the
    log-odds of the second class), classes the forest never saw at `ABSENT`; regression: the mean value (B, 1).

    Args:
        modalities: tabular modalities whose features (in order) the trees split on.
        trees, nodes: table sizes; depth: the deepest leaf.
        classes: the output column of each of the K leaf values (regression: [0]).
        num_outputs: logits per record; classify: whether the values are class fractions.
    """

    kind = "forest"

    def __init__(self, modalities: list[str], trees: int, nodes: int, depth: int, classes: list[int],
                 num_outputs: int, classify: bool) -> None:
        super().__init__()
        self.modalities, self.depth, self.classes = list(modalities), depth, list(classes)
        self.num_outputs, self.classify = num_outputs, classify
        for name, dtype in NODE_TABLES:
            self.register_buffer(name, torch.zeros(trees, nodes, dtype=dtype))
        self.register_buffer("value", torch.zeros(trees, nodes, len(classes)))

    def options(self) -> dict[str, Any]:
        t, n = self.feature.shape
        return {"modalities": self.modalities, "trees": t, "nodes": n, "depth": self.depth, "classes": self.classes,
                "num_outputs": self.num_outputs, "classify": self.classify}

    def forward(self, batch: Batch) -> Tensor:
        x = tree_matrix(batch, self.modalities).double()  # (B, F)
        t = torch.arange(self.feature.shape[0], device=x.device)[None, :]  # (1, T)
        mean = self.value[t, descend(self, x)].mean(1)  # (B, K)
        if not self.classify:
            return mean
        return fractions_to_logits(mean, self.classes, self.num_outputs)


def fractions_to_logits(p: Tensor, classes: list[int], num_outputs: int) -> Tensor:
    """(B, K) fractions of the classes `classes` -> the task's logits: log-probabilities over `num_outputs`
    classes (unseen ones at `ABSENT`), or for binary (`num_outputs` 1) the log-odds (B, 1)."""
    full = torch.zeros(p.shape[0], max(num_outputs, 2), device=p.device)
    full[:, classes] = p.float()
    logp = full.clamp_min(FLOOR).log()  # (B, K)
    logp[:, [c for c in range(full.shape[1]) if c not in classes]] = ABSENT
    return logp[:, 1:] - logp[:, :1] if num_outputs == 1 else logp


ABSENT = -30.0  # the logit of a class that a model's training records lack
FLOOR = 1e-4  # the least class fraction a forest's logits express (no tree voting for a class is not certainty)


def forest_from_sklearn(model: Any, modalities: list[str], num_outputs: int) -> Forest:
    """Copy a fitted RandomForestClassifier/Regressor (numeric splits) into a Forest."""
    trees = [e.tree_ for e in model.estimators_]
    classify = hasattr(model, "classes_")
    classes = [int(c) for c in model.classes_] if classify else [0]
    module = Forest(modalities, len(trees), max(t.node_count for t in trees), max(max(t.max_depth, 1)
                    for t in trees), classes, num_outputs, classify)
    for i, t in enumerate(trees):
        n = t.node_count
        leaf = t.children_left == -1
        module.feature[i, :n] = torch.from_numpy(np.where(leaf, 0, t.feature).astype(np.int64))
        module.threshold[i, :n] = torch.from_numpy(t.threshold.astype(np.float64))
        module.left[i, :n] = torch.from_numpy(np.where(leaf, 0, t.children_left).astype(np.int64))
        module.right[i, :n] = torch.from_numpy(np.where(leaf, 0, t.children_right).astype(np.int64))
        module.leaf[i, :n] = torch.from_numpy(leaf)
        module.leaf[i, n:] = True
        module.missing_left[i, :n] = torch.from_numpy(np.asarray(t.missing_go_to_left).astype(bool))
        module.value[i, :n] = torch.from_numpy(t.value[:, 0, :].astype(np.float32))
    return module


CLASSICAL: dict[str, type[nn.Module]] = {"tfidf_linear": TfidfLinear, "trees": TreeEnsemble, "forest": Forest}
