"""Cross-modal reconstruction from the shared code (the bimodal deep autoencoder of Ngiam et al., ICML 2011)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.data.batch import Batch
from polymodal.layers import mlp
from polymodal.objectives.base import OBJECTIVES, Objective

if TYPE_CHECKING:
    from polymodal.output import Output


@OBJECTIVES.register("reconstruction")
class Reconstruction(Objective):
    """Reconstructs every modality's pooled encoder features from the fused code, with modalities dropped.

    The model is run a second time on the batch with one random present modality per record marked missing
    (with probability `drop_prob`; a record's last present modality is never dropped), so the fused code must
    carry what the dropped modality would have said. A small MLP decoder per modality maps that fused code to
    the modality's pooled features from the first pass (detached); the error is 1 - cosine similarity, so
    shrinking the features cannot shrink the loss. Averaged over every (record, modality) that was present.

    Args:
        in_dims: pooled encoder width per modality (derived).
        fused_dim: fused width (derived).
        hidden: decoder MLP width.
        layers: decoder linear layers.
        drop_prob: probability that a record has one of its modalities dropped in the second pass.
    """

    def __init__(self, in_dims: Mapping[str, int], fused_dim: int, hidden: int = 128, layers: int = 2,
                 drop_prob: float = 0.5) -> None:
        super().__init__(in_dims, fused_dim)
        if not 0.0 <= drop_prob <= 1.0:
            raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob}")
        self.decoders = nn.ModuleDict({m: mlp(fused_dim, hidden, d, layers, dropout=0.0) for m, d in in_dims.items()})
        self.drop_prob = drop_prob

    def forward(self, model: Callable[[Batch], Output], batch: Batch, out: Output) -> Tensor:
        present = drop_one(batch.present, self.drop_prob)
        fused = model(replace(batch, present=present)).fused  # (B, D_fused)
        total, count = self.zero(), 0
        for m, decoder in self.decoders.items():
            keep = batch.present[m]  # (B,)
            err = 1.0 - F.cosine_similarity(decoder(fused[keep]), out.features[m][keep].detach(), dim=1)
            total, count = total + err.sum(), count + int(keep.sum())
        return total / max(1, count)


def drop_one(present: Mapping[str, Tensor], prob: float) -> dict[str, Tensor]:
    """With probability `prob` per record, mark one of its present modalities (chosen uniformly) missing.

    Records with a single present modality keep it.
    """
    names = list(present)
    p = torch.stack([present[m] for m in names], dim=1)  # (B, M)
    chosen = torch.rand(p.shape, device=p.device).masked_fill(~p, -1.0).argmax(dim=1)  # (B,)
    eligible = (p.sum(dim=1) >= 2) & (torch.rand(p.shape[0], device=p.device) < prob)  # (B,)
    drop = F.one_hot(chosen, len(names)).bool() & eligible[:, None]  # (B, M)
    kept = p & ~drop
    return {m: kept[:, i] for i, m in enumerate(names)}
