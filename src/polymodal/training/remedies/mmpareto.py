"""`mmpareto` (Wei and Hu, ICML 2024): per encoder, the gradient of the multimodal loss (task loss plus auxiliary
and objective losses) and the gradient of that modality's unimodal loss are combined. Without conflict
(cosine >= 0) their sum; with conflict twice the MGDA min-norm combination of the two, each parameter tensor
rescaled up to the norm of the plain sum where it is smaller (the paper's magnitude rule). Other parameters take
the plain sum of all losses' gradients. Simplifications: no extra scale factor (gamma = 1); the gradients are
computed without the mixed-precision loss scaler (use 32-true or bf16)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from polymodal.model import MultimodalModel
from polymodal.training.remedies.base import REMEDIES, Remedy


def min_norm_weight(g1: Tensor, g2: Tensor) -> float:
    """MGDA for two gradients (closed form): the a in [0, 1] that minimises |a * g1 + (1 - a) * g2|."""
    diff = (g1 - g2).flatten()
    denom = diff.dot(diff)
    if denom <= 1e-20:
        return 0.5
    return float((-g2.flatten().dot(diff) / denom).clamp(0.0, 1.0))


def pareto_combine(multimodal: Sequence[Tensor], unimodal: Sequence[Tensor]) -> list[Tensor]:
    """MMPareto for one encoder: its per-tensor gradients of the multimodal and of the unimodal loss -> combined.

    No conflict (cosine >= 0): their sum. Conflict: 2 * (a * g_mm + (1 - a) * g_uni) with MGDA's a, each tensor
    scaled up to the norm of the plain sum where it is smaller.
    """
    summed = [a + b for a, b in zip(multimodal, unimodal)]
    g_mm = torch.cat([g.flatten() for g in multimodal])
    g_uni = torch.cat([g.flatten() for g in unimodal])
    if g_mm.dot(g_uni) >= 0:
        return summed
    a = min_norm_weight(g_mm, g_uni)
    out = []
    for x, y, s in zip(multimodal, unimodal, summed):
        g = 2.0 * (a * x + (1.0 - a) * y)
        norm, target = g.norm(), s.norm()
        out.append(g * (target / norm) if 0 < norm < target else g)
    return out


def pareto_surrogate(encoders: Mapping[str, nn.Module], params: Sequence[nn.Parameter], multimodal: Tensor,
                     unimodal: Mapping[str, Tensor]) -> Tensor:
    """A loss whose gradient is MMPareto's: per encoder the combination of the multimodal gradient and its
    modality's unimodal gradient, everywhere else the plain sum of every loss's gradient."""
    losses = {"": multimodal, **unimodal}
    grads = {k: autograd_grads(loss, params) for k, loss in losses.items()}
    total = {id(p): _sum([grads[k][i] for k in grads], p) for i, p in enumerate(params)}
    index = {id(p): i for i, p in enumerate(params)}
    for m, encoder in encoders.items():
        own = [p for p in encoder.parameters() if id(p) in index]
        if m not in unimodal or not own:
            continue
        mm = [_sum([grads[""][index[id(p)]]], p) for p in own]
        uni = [_sum([grads[m][index[id(p)]]], p) for p in own]
        rest = [_sum([grads[k][index[id(p)]] for k in unimodal if k != m], p) for p in own]
        for p, g, r in zip(own, pareto_combine(mm, uni), rest):
            total[id(p)] = g + r
    used = [(p, total[id(p)]) for i, p in enumerate(params) if any(grads[k][i] is not None for k in grads)]
    return torch.stack([(g.detach() * p).sum() for p, g in used]).sum()


def autograd_grads(loss: Tensor, params: Sequence[nn.Parameter]) -> list[Tensor | None]:
    if not loss.requires_grad:
        return [None] * len(params)
    return list(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))


def _sum(grads: Sequence[Tensor | None], like: Tensor) -> Tensor:
    present = [g for g in grads if g is not None]
    return torch.stack(present).sum(0) if present else torch.zeros_like(like)


@REMEDIES.register("mmpareto")
class MMPareto(Remedy):
    """Back-propagates a surrogate loss whose gradient is MMPareto's combination (see `pareto_surrogate`)."""

    unimodal = True

    def loss(self, model: MultimodalModel, heads: nn.Module, task_loss: Tensor, others: Sequence[Tensor],
             unimodal: Mapping[str, Tensor]) -> Tensor:
        multimodal = torch.stack([task_loss, *others]).sum()
        params = [p for p in (*model.parameters(), *heads.parameters()) if p.requires_grad]
        return pareto_surrogate(model.encoders, params, multimodal, unimodal)
