"""Batched inference over a decoded dataset (plain torch, no Lightning)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from polymodal.config import Config
from polymodal.data.dataset import MultimodalDataset, blank_dataset, make_loader, to_model_inputs
from polymodal.features.cache import use_feature_cache
from polymodal.model import MultimodalModel
from polymodal.output import Output
from polymodal.processors import Processor
from polymodal.tasks import Task


def frozen_features(config: Config, model: torch.nn.Module, processors: Mapping[str, Processor],
                    dataset: MultimodalDataset, keep: frozenset[str] = frozenset()) -> MultimodalDataset:
    """`dataset` with the inputs of the model's frozen encoders replaced by their outputs from the feature cache
    (computed once and stored where the modality has `cache: true`; used where already stored otherwise), so
    evaluating it never runs those encoders again. Every evaluation of clean records goes through here.

    `keep`: modalities whose inputs stay (a corrupted modality: its encoder must see the corruption). An
    ensemble's modalities are replaced where every member reading them is a polymodal model with that frozen
    encoder (`EnsembleModel.shared_encoders`); other models get `dataset` as it is.
    """
    shared = getattr(model, "shared_encoders", None)
    encoders = model.encoders if isinstance(model, MultimodalModel) else shared() if callable(shared) else None
    if not encoders or not len(dataset):
        return dataset
    return use_feature_cache(config, encoders, processors, {"data": dataset}, keep=keep, lookup=True)["data"]


@torch.no_grad()
def predict_outputs(model: MultimodalModel, processors: Mapping[str, Processor], dataset: MultimodalDataset,
                    batch_size: int = 256, drop: frozenset[str] = frozenset()) -> tuple[Output, Tensor | None]:
    """Model outputs for every record, concatenated, plus the targets if the dataset has them.

    `drop` names modalities to treat as missing for every record.
    """
    model.eval()
    device = next(model.parameters()).device
    outs: list[Output] = []
    targets: list[Tensor] = []
    for batch in make_loader(dataset, batch_size, shuffle=False):
        batch = to_model_inputs(batch.to(device).without(drop), processors, train=False)
        outs.append(model(batch))
        if batch.target is not None:
            targets.append(batch.target)
    return concat_outputs(outs), (torch.cat(targets) if targets else None)


@torch.no_grad()
def predict_embeddings(model: MultimodalModel, processors: Mapping[str, Processor], dataset: MultimodalDataset,
                       modality: str, batch_size: int = 256) -> Tensor:
    """(N, E) contrastive embeddings of one modality, from its encoder alone; NaN rows where it is missing.

    The dataset needs to hold only that modality (other towers are not run).
    """
    if model.contrastive is None:
        raise ValueError("this model has no contrastive objective, so no per-modality embeddings")
    model.eval()
    device = next(model.parameters()).device
    chunks: list[Tensor] = []
    for batch in make_loader(dataset, batch_size, shuffle=False):
        batch = to_model_inputs(batch.to(device), processors, train=False)
        pooled = model.encoders[modality](batch.inputs[modality]).pooled  # (B, D_m)
        chunks.append(model.embeddings({modality: pooled}, batch.present)[modality])  # type: ignore[index]
    return torch.cat(chunks)


def empty_outputs(model: MultimodalModel, processors: Mapping[str, Processor]) -> Output:
    """Outputs for 0 records, shaped as for any other number: the model runs on one blank record, cut to none."""
    out, _ = predict_outputs(model, processors, blank_dataset(processors))
    return concat_outputs([out], rows=slice(0, 0))


def empty_embeddings(model: MultimodalModel, processors: Mapping[str, Processor], modality: str) -> Tensor:
    """(0, E): one modality's contrastive embeddings for 0 records."""
    return predict_embeddings(model, processors, blank_dataset(processors), modality)[:0]


def concat_outputs(outs: list[Output], rows: slice = slice(None)) -> Output:
    """The outputs of consecutive batches as one (`rows`: keep only those)."""
    out = _concat(outs)
    cut = {"logits": out.logits[rows], "fused": out.fused[rows], "features": _rows(out.features, rows),
           "modality_logits": _rows(out.modality_logits, rows), "embeddings": _rows(out.embeddings, rows),
           "uncertainty": _rows(out.uncertainty, rows),
           "sequences": None if out.sequences is None else out.sequences[rows], "stats": _rows(out.stats, rows)}
    return Output(**cut)  # type: ignore[arg-type]


def _rows(tensors: dict[str, Tensor] | None, rows: slice) -> dict[str, Tensor] | None:
    return None if tensors is None else {k: v[rows] for k, v in tensors.items()}


def _concat(outs: list[Output]) -> Output:
    per, emb, unc = outs[0].modality_logits, outs[0].embeddings, outs[0].uncertainty
    return Output(
        logits=torch.cat([o.logits for o in outs]),
        fused=torch.cat([o.fused for o in outs]),
        features={m: torch.cat([o.features[m] for o in outs]) for m in outs[0].features},
        modality_logits=None if per is None else {m: torch.cat([o.modality_logits[m] for o in outs])  # type: ignore[index]
                                                  for m in per},
        uncertainty=None if unc is None else {m: torch.cat([o.uncertainty[m] for o in outs])  # type: ignore[index]
                                              for m in unc},
        embeddings=None if emb is None else {m: torch.cat([o.embeddings[m] for o in outs])  # type: ignore[index]
                                             for m in emb},
        sequences=None if outs[0].sequences is None else torch.cat([o.sequences for o in outs]),  # type: ignore[misc]
        stats={m: torch.cat([o.stats[m] for o in outs]) for m in outs[0].stats},
    )


def output_metrics(task: Task, out: Output, target: Tensor) -> dict[str, float]:
    """The task's metrics on model outputs (logits, and contrastive embeddings where the task uses them)."""
    return task.metrics(task.scores(out), target, out.embeddings)
