"""Contrastive alignment between modality pairs: symmetric InfoNCE with a learnable temperature (CLIP)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.objectives.base import OBJECTIVES, Objective

if TYPE_CHECKING:
    from polymodal.data.batch import Batch
    from polymodal.output import Output


MAX_LOGIT_SCALE = math.log(100.0)


@OBJECTIVES.register("contrastive")
class Contrastive(Objective):
    """Projects each modality's pooled features into one embedding space and aligns paired records.

    For every pair (a, b), over the records where both are present (pairs with fewer than 2 are skipped), the
    loss is the mean of the cross-entropies of `scale * z_a @ z_b.T` over rows and over columns, with the
    matching record as the target; the result is averaged over pairs. Under DDP (`gather`, the default) the
    records are those of every process, so that each record meets the negatives of the whole global batch:
    2 processes x batch 16 compute the loss and gradients of 1 process x batch 32.

    Args:
        in_dims: pooled encoder width per modality (derived).
        fused_dim: fused width (derived, unused).
        embed_dim: width E of the shared embedding space.
        temperature: initial temperature; the logit scale 1/temperature is learned. As in CLIP, its log is
            capped at log 100 after each optimizer step (`after_step`), not in the forward pass, where the
            clamp would stop its gradient for good once it passed the cap.
        gather: in a multi-process run, contrast against the embeddings of all processes (else local only).
    """

    def __init__(self, in_dims: Mapping[str, int], fused_dim: int, embed_dim: int = 128,
                 temperature: float = 0.07, gather: bool = True) -> None:
        super().__init__(in_dims, fused_dim)
        self.proj = nn.ModuleDict({m: nn.Linear(d, embed_dim) for m, d in in_dims.items()})
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        self.embed_dim = embed_dim
        self.gather = gather

    @property
    def scale(self) -> Tensor:
        return self.logit_scale.exp()

    def after_step(self) -> None:
        with torch.no_grad():
            self.logit_scale.clamp_(max=MAX_LOGIT_SCALE)

    def embed(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """L2-normalised (B, E) embedding for each modality in `features` (pooled (B, D_m) encoder features)."""
        return {m: F.normalize(self.proj[m](x), dim=1) for m, x in features.items()}

    def forward(self, model: Callable[[Batch], Output], batch: Batch, out: Output) -> Tensor:
        z = self.embed(out.features)
        losses = []
        for a, b in self.pairs():
            both = batch.present[a] & batch.present[b]  # (B,)
            za, zb = z[a][both], z[b][both]  # (N, E) each
            if self.gather:
                za, zb = all_rows(torch.cat([za, zb], dim=1)).split(self.embed_dim, dim=1)  # (N_all, E) each
            if za.shape[0] >= 2:  # the same on every process: they all take the same collective steps
                losses.append(symmetric_info_nce(za, zb, self.scale))
        return torch.stack(losses).mean() if losses else self.zero()


def symmetric_info_nce(za: Tensor, zb: Tensor, scale: Tensor) -> Tensor:
    """Mean of row-wise and column-wise cross-entropy of `scale * za @ zb.T`; record i matches record i."""
    logits = scale * za @ zb.T  # (N, N)
    target = torch.arange(za.shape[0], device=za.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def all_rows(x: Tensor) -> Tensor:
    """(N_r, D) rows of this process -> the rows of every process in rank order (sum of N_r, D); `x` itself
    outside a multi-process run. Processes may hold different numbers of rows.

    Gradients flow back to each process's own rows: the gather's backward sums, for those rows, the gradients
    of every process's (identical, global) loss, W times one copy's; DDP then averages over the W processes, so
    every parameter gets the gradient one process would get from the whole global batch.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    import torch.distributed.nn.functional as dist_nn  # only in a multi-process run: it imports a lot

    counts = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, torch.tensor([x.shape[0]], device=x.device))
    padded = F.pad(x, (0, 0, 0, int(max(counts)) - x.shape[0]))  # (N_max, D): the gather needs equal shapes
    parts = dist_nn.all_gather(padded)
    return torch.cat([part[: int(n)] for part, n in zip(parts, counts)])  # (sum N_r, D)
