"""Modality imbalance: diagnostics logged while training, and remedies that rebalance how modalities learn.

In joint training one modality often dominates: it lowers the loss fastest, and the others' encoders stay
under-trained. Settings live in `training.imbalance` (`ImbalanceConfig`).

Diagnostics (`diagnostics: true`, the default), logged once per epoch into the run's CSV log:
- `probe_acc_<m>`: validation accuracy of a linear probe on modality m's pooled encoder features. Probes read
  detached features and take one step of their own Adam (`probe_lr`, no schedule, closed-form gradients) per
  training step, so they never change the model, its optimizer, gradient clipping or the random stream; they
  are not saved with the model.
- `grad_norm_<m>`: L2 norm of the gradient of all of encoder m's parameters as the optimizer receives it
  (after any remedy, before clipping), mean over the epoch's optimizer steps.
- `confidence_<m>`: mean probability of the true class under modality m's unimodal prediction on the training
  batches (the score OGM-GE compares); `confidence_ratio`: the largest of them over the smallest. Unimodal
  predictions are the fusion's per-modality logits where it has them (late fusion), else the probes' (with
  OGM-GE's paper form: the fused model's prediction from each modality alone, the score it compares).
Probes and confidences need a single-label task (binary, multiclass); for multilabel, regression and retrieval
only `grad_norm_<m>` is logged.

Remedies (`method`), for any number of modalities and any encoder: one strategy object per remedy, registered in
`polymodal.training.remedies` (`ogm_ge`, `grad_blend`, `aux_losses`, `mmpareto`; each file documents its method).
`Imbalance` calls the remedy's hooks without knowing which one it runs.

Unimodal predictions of the remedies come from the fusion's per-modality logits where it has them (these
branches are part of the model and saved with it), else from linear heads on each modality's pooled features
owned by this module: they train with the model but are not part of it, so saved runs and predictions are
unaffected. Records missing a modality do not count in its unimodal loss, probe or confidence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from polymodal.config import ImbalanceConfig
from polymodal.data.batch import Batch
from polymodal.model import MultimodalModel
from polymodal.output import Output
from polymodal.tasks import Binary, Multiclass, Task
from polymodal.training.remedies import REMEDIES, Remedy
from polymodal.training.remedies.base import Reduce, has_modality_logits, masked_loss, true_class_probability


def grad_norm(params: Iterable[nn.Parameter]) -> Tensor | None:
    """L2 norm of all these parameters' gradients together (None if none has one)."""
    grads = [p.grad.detach() for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float()) if grads else None


def probe_gradients(probe: nn.Linear, x: Tensor, target: Tensor, present: Tensor) -> tuple[list[Tensor], Tensor]:
    """Closed-form gradient of a linear probe's mean cross-entropy (softmax, or sigmoid for one logit) over the
    present records, [dW (K, D), db (K,)], and each record's probability of the true class (B,).

    x: (B, D) features; target: (B,) class indices; present: (B,) bool.
    """
    d_weight, d_bias, true = stacked_probe_gradients(probe.weight[None], probe.bias[None], x[None], target,
                                                     present[None])
    return [d_weight[0], d_bias[0]], true[0]


def stacked_probe_gradients(weight: Tensor, bias: Tensor, x: Tensor, target: Tensor, present: Tensor
                            ) -> tuple[Tensor, Tensor, Tensor]:
    """`probe_gradients` of M probes of the same width at once (one kernel per step for all modalities).

    weight: (M, K, D); bias: (M, K); x: (M, B, D); target: (B,); present: (M, B) bool.
    Returns dW (M, K, D), db (M, K), true-class probabilities (M, B).
    """
    x = torch.where(present[..., None], x, 0.0)  # (M, B, D): a missing record's content cannot reach the sums
    z = torch.baddbmm(bias[:, None, :], x, weight.transpose(1, 2))  # (M, B, K)
    if z.shape[2] == 1:
        p = torch.sigmoid(z[..., 0])  # (M, B)
        true = torch.where(target.bool(), p, 1.0 - p)
        residual = (p - target.to(p))[..., None]  # (M, B, 1) = dL/dz per record
    else:
        probs = z.softmax(2)  # (M, B, K)
        true = probs.gather(2, target.long()[None, :, None].expand(len(z), -1, 1)).squeeze(2)  # (M, B)
        residual = probs - nn.functional.one_hot(target.long(), z.shape[2]).to(probs)  # (M, B, K)
    residual = residual * (present.to(z) / present.sum(1, keepdim=True).clamp_min(1))[..., None]
    return torch.bmm(residual.transpose(1, 2), x), residual.sum(1), true


class ForeachAdam:
    """Adam without weight decay over a fixed list of tensors, given their gradients; a handful of foreach kernels
    per step (the probes' optimizer: cheap enough to run on every training step)."""

    def __init__(self, params: list[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps, self.steps = params, lr, betas, eps, 0
        self.mean = [torch.zeros_like(p) for p in params]
        self.square = [torch.zeros_like(p) for p in params]

    def step(self, grads: list[Tensor]) -> None:
        (b1, b2), self.steps = self.betas, self.steps + 1
        torch._foreach_lerp_(self.mean, grads, 1 - b1)
        torch._foreach_mul_(self.square, b2)
        torch._foreach_addcmul_(self.square, grads, grads, 1 - b2)
        denom = torch._foreach_sqrt(self.square)
        torch._foreach_div_(denom, math.sqrt(1 - b2**self.steps))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.mean, denom, -self.lr / (1 - b1**self.steps))


class Imbalance(nn.Module):
    """Imbalance diagnostics and the configured remedy for one training module (never saved with the model).

    The training module calls it at each hook: `unimodal_losses` and `loss` in the training step, `observe_train`
    and `observe_val` on each batch, `before_optimizer_step` and `after_optimizer_step`, and the epoch ends,
    which return what to log. It runs the diagnostics itself and hands every hook on to the remedy (`self.remedy`,
    built from the `REMEDIES` registry by `config.method`).

    Args:
        model: the model being trained (its encoders, fusion and widths).
        task: the fitted task (loss, number of outputs, class indices).
        config: `training.imbalance`.
        seed: initialises probes and heads without drawing from the global random stream.
    """

    def __init__(self, model: MultimodalModel, task: Task, config: ImbalanceConfig, seed: int = 0) -> None:
        super().__init__()
        remedy = REMEDIES.get(config.method)
        remedy.check_task(task, config.method)  # type: ignore[attr-defined]
        self.config = config
        self.task = task
        self.modalities = model.modalities
        branches = has_modality_logits(model)
        self.remedy: Remedy = remedy(model, task, config, seed, branches)
        single_label = isinstance(task, (Multiclass, Binary))
        self.scored = single_label and (config.diagnostics or self.remedy.confidence)
        dims, k = {m: e.out_dim for m, e in model.encoders.items()}, task.num_outputs
        probes = self.scored and (config.diagnostics or not (branches or self.remedy.own_scores))
        heads = self.remedy.unimodal and not branches
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.probes = nn.ModuleDict({m: nn.Linear(d, k) for m, d in dims.items()} if probes else {})
            self.heads = nn.ModuleDict({m: nn.Linear(d, k) for m, d in dims.items()} if heads else {})
        self.probes.requires_grad_(False)  # trained by `step_probes` alone, never by the model's loss
        self._probe_optimizer: ForeachAdam | None = None
        self._params: dict[str, list[nn.Parameter]] | None = None
        self.reset_train()
        self.reset_val()

    # ---- losses ---------------------------------------------------------------------------------------------
    def unimodal_losses(self, batch: Batch, out: Output) -> dict[str, Tensor]:
        """Each modality's unimodal task loss (only for remedies that train with them)."""
        if not self.remedy.unimodal or batch.target is None:
            return {}
        logits = out.modality_logits or {m: head(out.features[m]) for m, head in self.heads.items()}
        return {m: masked_loss(self.task, x, batch.target, batch.present[m]) for m, x in logits.items()}

    def loss(self, model: MultimodalModel, task_loss: Tensor, others: Sequence[Tensor],
             unimodal: Mapping[str, Tensor]) -> Tensor:
        """The loss to back-propagate from the task loss, the `others` (fusion auxiliary losses and weighted
        objectives) and the remedy's unimodal losses."""
        return self.remedy.loss(model, self.heads, task_loss, others, unimodal)

    # ---- per batch ------------------------------------------------------------------------------------------
    def observe_train(self, batch: Batch, out: Output, task_loss: Tensor, unimodal: Mapping[str, Tensor]) -> None:
        """Step the probes, accumulate confidences (per optimizer step and per epoch); the remedy's own observation."""
        self.remedy.observe_train(batch, task_loss, unimodal)
        if not self.scored or batch.target is None:
            return
        true = self.step_probes(out.features, batch) if self.probes else {}
        unimodal_logits = out.modality_logits
        if unimodal_logits is None:  # e.g. OGM-GE's paper form: the fused model's prediction from each modality
            unimodal_logits = self.remedy.unimodal_scores(out, batch)
        if unimodal_logits is not None:
            true = {m: true_class_probability(x.detach(), batch.target) for m, x in unimodal_logits.items()}
        for m, p in true.items():  # (B,) probability of the true class
            keep = batch.present[m]
            pair = torch.stack([torch.where(keep, p, 0.0).sum(), keep.sum().to(p)])  # [sum, count]
            self.remedy.observe_confidence(m, pair)
            self._confidence[m] = self._confidence[m] + pair if m in self._confidence else pair

    def step_probes(self, features: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        """One Adam step of every probe on detached features (closed-form gradients: no autograd, a few kernels
        per step); returns each record's probability of the true class before the step, (B,) per modality."""
        if self._probe_optimizer is None:
            self._probe_optimizer = ForeachAdam(list(self.probes.parameters()), lr=self.config.probe_lr)
        grads, true = [], {}
        device = next(iter(features.values())).device.type
        precise = torch.autocast(device, enabled=False) if torch.is_autocast_enabled(device) else nullcontext()
        with torch.no_grad(), precise:  # float32 probes under mixed precision too
            probes = list(self.probes.values())
            if len({p.weight.shape for p in probes}) == 1:  # one batched step for every modality
                names = list(self.probes)
                dtype = probes[0].weight.dtype
                d_weight, d_bias, stacked = stacked_probe_gradients(
                    torch.stack([p.weight for p in probes]), torch.stack([p.bias for p in probes]),
                    torch.stack([features[m].to(dtype) for m in names]), batch.target,
                    torch.stack([batch.present[m] for m in names]))
                grads = [g for i in range(len(names)) for g in (d_weight[i], d_bias[i])]  # parameters() order
                true = dict(zip(names, stacked.unbind(0)))
            else:
                for m, probe in self.probes.items():
                    g, true[m] = probe_gradients(probe, features[m].to(probe.weight.dtype), batch.target,
                                                 batch.present[m])
                    grads += g
            self._probe_optimizer.step(grads)
        return true

    def observe_val(self, batch: Batch, out: Output) -> None:
        """Accumulate probe hits; the remedy's own observation (with the unimodal losses on demand)."""
        if batch.target is None:
            return
        for m, probe in self.probes.items():
            keep = batch.present[m]
            pred = self.task.class_index(probe(out.features[m].to(probe.weight.dtype)))  # type: ignore[attr-defined]
            hits = (pred[keep] == batch.target[keep]).sum().float()
            self._probe_hits[m] = self._probe_hits.get(m, 0.0) + torch.stack([hits, keep.sum().to(hits)])
        self.remedy.observe_val(batch, out, lambda: self.unimodal_losses(batch, out))

    def before_optimizer_step(self, model: MultimodalModel, reduce: Reduce, epoch: int) -> None:
        """The remedy's gradient changes (e.g. OGM-GE's modulation), then the gradient norms of the diagnostics."""
        self.remedy.before_optimizer_step(self._encoder_params(model), reduce, epoch)
        if self.config.diagnostics:
            for m, params in self._encoder_params(model).items():
                norm = grad_norm(params)
                if norm is not None:
                    self._grad_norms.setdefault(m, []).append(norm)

    def after_optimizer_step(self, model: MultimodalModel) -> None:
        """The remedy's parameter changes (e.g. OGM-GE with `ogm_scale: step`)."""
        self.remedy.after_optimizer_step(self._encoder_params(model))

    def _encoder_params(self, model: MultimodalModel) -> dict[str, list[nn.Parameter]]:
        """Each encoder's parameters, listed once (walking the modules on every step costs more than the norms)."""
        if self._params is None:
            self._params = {m: list(e.parameters()) for m, e in model.encoders.items()}
        return self._params

    # ---- per epoch ------------------------------------------------------------------------------------------
    def reset_train(self) -> None:
        self._confidence: dict[str, Tensor] = {}
        self._grad_norms: dict[str, list[Tensor]] = {}
        self.remedy.reset_train()

    def reset_val(self) -> None:
        self._probe_hits: dict[str, Tensor] = {}
        self.remedy.reset_val()

    def train_epoch_end(self, reduce: Reduce) -> dict[str, Tensor]:
        """What to log for the training epoch (diagnostics, then the remedy's, which may update its state)."""
        logs = {f"grad_norm_{m}": torch.stack(v).mean() for m, v in self._grad_norms.items()}
        confidence = {m: ratio(reduce(v, "sum")) for m, v in self._confidence.items()}
        logs |= {f"confidence_{m}": v for m, v in confidence.items()}
        if len(confidence) > 1:
            values = torch.stack(list(confidence.values()))
            logs["confidence_ratio"] = values.max() / values.min().clamp_min(1e-8)
        logs |= self.remedy.train_epoch_end(reduce)
        self.reset_train()
        return logs

    def val_epoch_end(self, reduce: Reduce) -> dict[str, Tensor]:
        """What to log for the validation epoch (probe accuracy per modality)."""
        logs = {f"probe_acc_{m}": ratio(reduce(v, "sum")) for m, v in self._probe_hits.items()}
        self.remedy.val_epoch_end(reduce)
        self._probe_hits = {}
        return logs


def ratio(pair: Tensor) -> Tensor:
    """(2,) [total, count] -> total / count."""
    return pair[0] / pair[1].clamp_min(1.0)
