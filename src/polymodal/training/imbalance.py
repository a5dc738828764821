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

Remedies (`method`), for any number of modalities and any encoder (every parameter of an encoder, whatever
its layers; the published OGM-GE code only touches 4-D convolution weights):
- `ogm_ge` (Peng et al., CVPR 2022): before each optimizer step, encoder m's gradient is scaled by k_m, a
  function of rho_m = s_m / mean of the other modalities' s, where s is the mean true-class confidence on the
  batch(es) of that step; the weaker modalities keep k = 1 (the N-modality form of the paper's two-modality
  ratio). `ogm_form: paper` (the default) is Eq. 10: k_m = 1 - tanh(alpha * rho_m) when rho_m > 1, with s from
  the fused model's own per-modality predictions and only in the epochs `ogm_start`..`ogm_end`;
  `ogm_form: continuous` is polymodal's first form: 1 - tanh(alpha * (rho_m - 1)), s from the probes, every
  epoch (details in `polymodal.training.ogm`). Generalisation enhancement (`ge_noise`): Gaussian noise with the
  standard deviation of the unmodulated gradient is added to every encoder's gradient, as in the reference
  code. Logged: `ogm_coeff_<m>` (mean k per modulated epoch). The paper trains with SGD, where scaling the
  gradient scales the step; Adam(W) divides by a running gradient scale, so a slowly varying k mostly cancels out.
  `ogm_scale: step` therefore offers the same modulation applied to each encoder's parameter change after
  the optimizer step (identical to the paper for plain SGD; the GE noise still goes into the gradient).
- `aux_losses`: loss = task loss + aux_weight * sum_m L_m, with L_m the task loss of modality m's unimodal
  prediction.
- `grad_blend` (Gradient-Blending, Wang et al., CVPR 2020, the online variant):
  loss = w_fused * L_fused + sum_m w_m * L_m. Every `blend_window` epochs (the paper's super-epoch), for
  every head k (fused and each modality), generalisation dG_k = drop of its validation loss since the
  previous estimate and overfitting change dO_k = change of (validation loss - training loss); w_k is
  proportional to max(dG_k, 0) / dO_k^2 and the weights sum to 1. Simplifications: the training loss is the
  mean over the last epoch's steps (not re-measured at its end); the first reference is the losses of the
  first training batch, with no overfitting yet; weights start uniform and are kept when no head improved.
  Estimated this way within one run, dO_k is noisy and the weights jump between heads (see the benchmark).
  Logged: `blend_weight_fused`, `blend_weight_<m>`.
- `mmpareto` (Wei and Hu, ICML 2024): per encoder, the gradient of the multimodal loss (task loss plus
  auxiliary and objective losses) and the gradient of that modality's unimodal loss are combined. Without
  conflict (cosine >= 0) their sum; with conflict twice the MGDA min-norm combination of the two, each
  parameter tensor rescaled up to the norm of the plain sum where it is smaller (the paper's magnitude rule).
  Other parameters take the plain sum of all losses' gradients. Simplifications: no extra scale factor
  (gamma = 1); the gradients are computed without the mixed-precision loss scaler (use 32-true or bf16).

Unimodal predictions of the remedies come from the fusion's per-modality logits where it has them (these
branches are part of the model and saved with it), else from linear heads on each modality's pooled features
owned by this module: they train with the model but are not part of it, so saved runs and predictions are
unaffected. Records missing a modality do not count in its unimodal loss, probe or confidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from functools import partial

import torch
from torch import Tensor, nn

from polymodal.config import ImbalanceConfig
from polymodal.data.batch import Batch
from polymodal.layers import EncoderOutput
from polymodal.model import MultimodalModel
from polymodal.output import Output
from polymodal.tasks import Binary, Multiclass, Task
from polymodal.training.ogm import fused_unimodal_logits, in_window, ogm_coefficient, pooled_trial

UNIMODAL_METHODS = ("grad_blend", "aux_losses", "mmpareto")
Reduce = Callable[[Tensor, str], Tensor]  # (tensor, "sum" | "mean") -> reduced over processes


def true_class_probability(logits: Tensor, target: Tensor) -> Tensor:
    """(B, K) multiclass logits or (B, 1) binary logit, (B,) class indices -> (B,) probability of the true class."""
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0].float())  # (B,)
        return torch.where(target.bool(), p, 1.0 - p)
    return logits.float().softmax(1).gather(1, target[:, None].long()).squeeze(1)  # (B,)


def ogm_coefficients(confidence: Mapping[str, float], alpha: float, form: str = "paper") -> dict[str, float]:
    """OGM-GE's gradient factor per modality from rho_m = s_m / mean(s of the others) (see `ogm_coefficient`)."""
    out = {}
    for m, s in confidence.items():
        others = [v for k, v in confidence.items() if k != m]
        rho = s / max(sum(others) / len(others), 1e-8) if others else 1.0
        out[m] = ogm_coefficient(rho, alpha, form)
    return out


def modulate_(params: Iterable[nn.Parameter], coefficient: float, noise: torch.Generator | None = None) -> None:
    """grad <- coefficient * grad, in place; with a `noise` generator, plus Gaussian noise with the unmodulated
    gradient's standard deviation (OGM-GE's generalisation enhancement)."""
    for p in params:
        if p.grad is None:
            continue
        std = p.grad.std() if p.grad.numel() > 1 else torch.zeros((), device=p.grad.device)
        p.grad.mul_(coefficient)
        if noise is not None:
            draw = torch.randn(p.grad.shape, generator=noise, device=p.grad.device, dtype=p.grad.dtype)
            p.grad.add_(draw * std)


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


def blend_weights(generalization: Mapping[str, float], overfitting: Mapping[str, float],
                  min_overfitting: float = 1e-3) -> dict[str, float] | None:
    """Gradient-Blending weights: w_k proportional to max(dG_k, 0) / dO_k^2, summing to 1 (None if no dG_k > 0).

    Args:
        generalization: dG_k, the drop of head k's validation loss over the estimation window.
        overfitting: dO_k, the change of head k's (validation loss - training loss) over the window;
            |dO_k| is floored at `min_overfitting` to keep the ratio finite.
    """
    raw = {k: max(g, 0.0) / max(abs(overfitting[k]), min_overfitting) ** 2 for k, g in generalization.items()}
    total = sum(raw.values())
    return {k: v / total for k, v in raw.items()} if total > 0 else None


def masked_loss(task: Task, logits: Tensor, target: Tensor, present: Tensor) -> Tensor:
    """The task loss over the records where the modality is present (0, still in the graph, if none is)."""
    if bool(present.all()):
        return task.loss(logits, target)
    if not bool(present.any()):
        return logits.sum() * 0.0
    return task.loss(logits[present], target[present])


def has_modality_logits(model: MultimodalModel) -> bool:
    """Whether the model's fusion keeps per-modality branches (so that `Output.modality_logits` is set)."""
    trial = pooled_trial(model)
    return trial is not None and trial.per_modality is not None


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


def grad_norm(params: Iterable[nn.Parameter]) -> Tensor | None:
    """L2 norm of all these parameters' gradients together (None if none has one)."""
    grads = [p.grad.detach() for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float()) if grads else None


def probe_gradients(probe: nn.Linear, x: Tensor, target: Tensor, present: Tensor) -> tuple[list[Tensor], Tensor]:
    """Closed-form gradient of a linear probe's mean cross-entropy (softmax, or sigmoid for one logit) over the
    present records, [dW (K, D), db (K,)], and each record's probability of the true class (B,).

    x: (B, D) features; target: (B,) class indices; present: (B,) bool.
    """
    x = torch.where(present[:, None], x, 0.0)  # (B, D): a missing record's content cannot reach the sums
    z = torch.addmm(probe.bias, x, probe.weight.T)  # (B, K)
    if z.shape[1] == 1:
        p = torch.sigmoid(z[:, 0])  # (B,)
        true = torch.where(target.bool(), p, 1.0 - p)
        residual = (p - target.to(p))[:, None]  # (B, 1) = dL/dz per record
    else:
        probs = z.softmax(1)  # (B, K)
        true = probs.gather(1, target[:, None].long()).squeeze(1)
        residual = probs - nn.functional.one_hot(target.long(), z.shape[1]).to(probs)  # (B, K)
    residual = residual * (present.to(z) / present.sum().clamp_min(1))[:, None]
    return [residual.T @ x, residual.sum(0)], true


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

    The LightningModule calls it at each hook: `unimodal_losses` and `loss` in the training step, `observe_train`
    and `observe_val` on each batch, `before_optimizer_step` and `after_optimizer_step`, and the epoch ends,
    which return what to log.

    Args:
        model: the model being trained (its encoders, fusion and widths).
        task: the fitted task (loss, number of outputs, class indices).
        config: `training.imbalance`.
        seed: initialises probes and heads without drawing from the global random stream.
    """

    def __init__(self, model: MultimodalModel, task: Task, config: ImbalanceConfig, seed: int = 0) -> None:
        super().__init__()
        check_task(config, task)
        self.config = config
        self.task = task
        self.modalities = model.modalities
        self.scored = isinstance(task, (Multiclass, Binary)) and (config.diagnostics or config.method == "ogm_ge")
        branches = has_modality_logits(model)
        dims, k = {m: e.out_dim for m, e in model.encoders.items()}, task.num_outputs
        paper = config.method == "ogm_ge" and config.ogm_form == "paper"
        self._fused_scores = partial(fused_unimodal_logits, model) if paper and not branches else None
        if self._fused_scores is not None and pooled_trial(model) is None:
            raise ValueError(f"training.imbalance.ogm_form: 'paper' reads each modality's prediction from the fused "
                             f"model, but fusion {type(model.fusion).__name__} needs tokens; use ogm_form: "
                             "continuous (confidences from linear probes) or another fusion")
        probes = self.scored and (config.diagnostics or not (branches or paper))
        heads = config.method in UNIMODAL_METHODS and not branches
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.probes = nn.ModuleDict({m: nn.Linear(d, k) for m, d in dims.items()} if probes else {})
            self.heads = nn.ModuleDict({m: nn.Linear(d, k) for m, d in dims.items()} if heads else {})
        if config.method == "grad_blend":  # saved in checkpoints, so that a resumed run goes on blending alike
            n = len(self.modalities) + 1  # the fused head, then each modality
            self.register_buffer("blend", torch.full((n,), 1.0 / n))
            self.register_buffer("blend_reference", torch.full((2, n), math.nan))  # val loss, overfitting
        self.probes.requires_grad_(False)  # trained by `step_probes` alone, never by the model's loss
        self._probe_optimizer: ForeachAdam | None = None
        self._params: dict[str, list[nn.Parameter]] | None = None
        self._generator: torch.Generator | None = None
        self.seed = seed
        self._blend_epochs = 0
        self._pending_steps: dict[str, tuple[float, list[Tensor]]] = {}
        self._step_confidence: dict[str, list[Tensor]] = {}
        self.reset_train()
        self.reset_val()

    @property
    def blend_names(self) -> list[str]:
        return ["fused", *self.modalities]

    # ---- losses ---------------------------------------------------------------------------------------------
    def unimodal_losses(self, batch: Batch, out: Output) -> dict[str, Tensor]:
        """Each modality's unimodal task loss (only for remedies that train with them)."""
        if self.config.method not in UNIMODAL_METHODS or batch.target is None:
            return {}
        logits = out.modality_logits or {m: head(out.features[m]) for m, head in self.heads.items()}
        return {m: masked_loss(self.task, x, batch.target, batch.present[m]) for m, x in logits.items()}

    def loss(self, model: MultimodalModel, task_loss: Tensor, others: Sequence[Tensor],
             unimodal: Mapping[str, Tensor]) -> Tensor:
        """The loss to back-propagate from the task loss, the `others` (fusion auxiliary losses and weighted
        objectives) and the remedy's unimodal losses."""
        method = self.config.method
        if method == "aux_losses":
            auxiliary = self.config.aux_weight * torch.stack([*unimodal.values()]).sum()
            return torch.stack([task_loss, *others, auxiliary]).sum()
        if method == "grad_blend":
            weighted = [self.blend[i + 1] * unimodal[m] for i, m in enumerate(self.modalities) if m in unimodal]
            return torch.stack([self.blend[0] * task_loss, *others, *weighted]).sum()
        multimodal = torch.stack([task_loss, *others]).sum()
        if method == "mmpareto":
            params = [p for p in (*model.parameters(), *self.heads.parameters()) if p.requires_grad]
            return pareto_surrogate(model.encoders, params, multimodal, unimodal)
        return multimodal

    # ---- per batch ------------------------------------------------------------------------------------------
    def observe_train(self, batch: Batch, out: Output, task_loss: Tensor, unimodal: Mapping[str, Tensor]) -> None:
        """Step the probes, accumulate confidences (per optimizer step and per epoch) and blending's losses."""
        if self.config.method == "grad_blend":
            self._observe_blend(batch, task_loss, unimodal)
        if not self.scored or batch.target is None:
            return
        true = self.step_probes(out.features, batch) if self.probes else {}
        unimodal_logits = out.modality_logits
        if unimodal_logits is None and self._fused_scores is not None:  # OGM-GE's paper form
            unimodal_logits = self._fused_scores(out.features, batch.present)
        if unimodal_logits is not None:
            true = {m: true_class_probability(x.detach(), batch.target) for m, x in unimodal_logits.items()}
        for m, p in true.items():  # (B,) probability of the true class
            keep = batch.present[m]
            pair = torch.stack([torch.where(keep, p, 0.0).sum(), keep.sum().to(p)])  # [sum, count]
            if self.config.method == "ogm_ge":
                self._step_confidence.setdefault(m, []).append(pair)
            self._confidence[m] = self._confidence[m] + pair if m in self._confidence else pair

    def _observe_blend(self, batch: Batch, task_loss: Tensor, unimodal: Mapping[str, Tensor]) -> None:
        losses = torch.stack([task_loss.detach(), *(unimodal[m].detach() for m in self.modalities)]).float()
        if torch.isnan(self.blend_reference).all():  # untrained: validation loss ~ training loss, no overfitting
            self.blend_reference.copy_(torch.stack([losses, torch.zeros_like(losses)]))
        self._blend_train = self._blend_train + losses * batch.size
        self._blend_count += batch.size

    def step_probes(self, features: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        """One Adam step of every probe on detached features (closed-form gradients: no autograd, a few kernels
        per step); returns each record's probability of the true class before the step, (B,) per modality."""
        if self._probe_optimizer is None:
            self._probe_optimizer = ForeachAdam(list(self.probes.parameters()), lr=self.config.probe_lr)
        grads, true = [], {}
        device = next(iter(features.values())).device.type
        precise = torch.autocast(device, enabled=False) if torch.is_autocast_enabled(device) else nullcontext()
        with torch.no_grad(), precise:  # float32 probes under mixed precision too
            for m, probe in self.probes.items():
                g, true[m] = probe_gradients(probe, features[m].float(), batch.target, batch.present[m])
                grads += g
            self._probe_optimizer.step(grads)
        return true

    def observe_val(self, batch: Batch, out: Output) -> None:
        """Accumulate probe hits and (for blending) each head's validation loss."""
        if batch.target is None:
            return
        for m, probe in self.probes.items():
            keep = batch.present[m]
            pred = self.task.class_index(probe(out.features[m].float()))  # type: ignore[attr-defined]
            hits = (pred[keep] == batch.target[keep]).sum().float()
            self._probe_hits[m] = self._probe_hits.get(m, 0.0) + torch.stack([hits, keep.sum().to(hits)])
        if self.config.method == "grad_blend":
            losses = [self.task.loss(out.logits, batch.target), *self.unimodal_losses(batch, out).values()]
            self._blend_val = self._blend_val + torch.stack(losses).detach().float() * batch.size
            self._blend_val_count += batch.size

    def before_optimizer_step(self, model: MultimodalModel, reduce: Reduce, epoch: int) -> None:
        """OGM-GE's modulation (with this step's confidences, summed over processes so that every replica scales
        alike; the paper form only within its epoch window), then the gradient norms of the diagnostics."""
        if self.config.method == "ogm_ge" and self._modulates(epoch):
            confidence = {m: reduce(torch.stack(v).sum(0), "sum") for m, v in self._step_confidence.items()}
            scores = {m: float(c[0] / c[1]) for m, c in confidence.items() if c[1] > 0}
            on_gradient = self.config.ogm_scale == "gradient"
            for m, k in ogm_coefficients(scores, self.config.alpha, self.config.ogm_form).items():
                params = self._encoder_params(model)[m]
                modulate_(params, k if on_gradient else 1.0, self._noise(params) if self.config.ge_noise else None)
                if not on_gradient:
                    self._pending_steps[m] = (k, [p.detach().clone() for p in params])
                self._coefficients[m] = self._coefficients.get(m, 0.0) + torch.tensor([k, 1.0])
        self._step_confidence = {}
        if self.config.diagnostics:
            for m, params in self._encoder_params(model).items():
                norm = grad_norm(params)
                if norm is not None:
                    self._grad_norms.setdefault(m, []).append(norm)

    def _modulates(self, epoch: int) -> bool:
        c = self.config
        return c.ogm_form == "continuous" or in_window(epoch, c.ogm_start, c.ogm_end)

    def after_optimizer_step(self, model: MultimodalModel) -> None:
        """OGM-GE with `ogm_scale: step`: scale each encoder's parameter change of this step by its k."""
        with torch.no_grad():
            for m, (k, before) in self._pending_steps.items():
                for p, old in zip(self._encoder_params(model)[m], before):
                    p.sub_(old).mul_(k).add_(old)  # old + k * (new - old)
        self._pending_steps = {}

    def _noise(self, params: Sequence[nn.Parameter]) -> torch.Generator:
        """The GE noise's own random stream: seeded alike in every process, so that replicas stay identical."""
        if self._generator is None:
            self._generator = torch.Generator(params[0].device).manual_seed(self.seed)
        return self._generator

    def _encoder_params(self, model: MultimodalModel) -> dict[str, list[nn.Parameter]]:
        """Each encoder's parameters, listed once (walking the modules on every step costs more than the norms)."""
        if self._params is None:
            self._params = {m: list(e.parameters()) for m, e in model.encoders.items()}
        return self._params

    # ---- per epoch ------------------------------------------------------------------------------------------
    def reset_train(self) -> None:
        self._confidence: dict[str, Tensor] = {}
        self._grad_norms: dict[str, list[Tensor]] = {}
        self._coefficients: dict[str, Tensor] = {}
        self._blend_train: Tensor | float = 0.0
        self._blend_count = 0

    def reset_val(self) -> None:
        self._probe_hits: dict[str, Tensor] = {}
        self._blend_val: Tensor | float = 0.0
        self._blend_val_count = 0
        self._val_losses: Tensor | None = None

    def train_epoch_end(self, reduce: Reduce) -> dict[str, Tensor]:
        """What to log for the training epoch; updates the blending weights (after this epoch's validation)."""
        logs = {f"grad_norm_{m}": torch.stack(v).mean() for m, v in self._grad_norms.items()}
        logs |= {f"ogm_coeff_{m}": v[0] / v[1] for m, v in self._coefficients.items()}
        confidence = {m: ratio(reduce(v, "sum")) for m, v in self._confidence.items()}
        logs |= {f"confidence_{m}": v for m, v in confidence.items()}
        if len(confidence) > 1:
            values = torch.stack(list(confidence.values()))
            logs["confidence_ratio"] = values.max() / values.min().clamp_min(1e-8)
        if self.config.method == "grad_blend":
            logs |= {f"blend_weight_{k}": w for k, w in zip(self.blend_names, self.blend.detach().clone())}
            self._blend_epochs += 1
            if self._blend_epochs % self.config.blend_window == 0:
                self.update_blend(reduce)
        self.reset_train()
        return logs

    def update_blend(self, reduce: Reduce) -> None:
        """Re-estimate the blending weights from this epoch's training and validation losses per head."""
        if self._val_losses is None or not self._blend_count:
            return
        train = reduce(self._blend_train / self._blend_count, "mean")  # type: ignore[operator]
        val, self._val_losses = self._val_losses.to(train), None
        overfit = val - train
        previous_val, previous_overfit = self.blend_reference.to(train)
        weights = blend_weights(dict(zip(self.blend_names, (previous_val - val).tolist())),
                                dict(zip(self.blend_names, (overfit - previous_overfit).tolist())))
        self.blend_reference.copy_(torch.stack([val, overfit]))
        if weights is not None:
            self.blend.copy_(torch.tensor([weights[k] for k in self.blend_names]))

    def val_epoch_end(self, reduce: Reduce) -> dict[str, Tensor]:
        """What to log for the validation epoch (probe accuracy per modality); keeps blending's losses."""
        logs = {f"probe_acc_{m}": ratio(reduce(v, "sum")) for m, v in self._probe_hits.items()}
        val_losses = None
        if self._blend_val_count:
            val_losses = reduce(self._blend_val / self._blend_val_count, "mean")  # type: ignore[operator]
        self.reset_val()
        self._val_losses = val_losses
        return logs


def ratio(pair: Tensor) -> Tensor:
    """(2,) [total, count] -> total / count."""
    return pair[0] / pair[1].clamp_min(1.0)


def check_task(config: ImbalanceConfig, task: Task) -> None:
    """Remedies need a task head; OGM-GE compares true-class confidences, so it needs a single-label task."""
    if config.method == "none":
        return
    if task.num_outputs == 0:
        raise ValueError(f"training.imbalance.method: {config.method!r} trains with unimodal task losses or "
                         f"confidences and needs a task head; task {task.name} has none (use method: none)")
    if config.method == "ogm_ge" and not isinstance(task, (Multiclass, Binary)):
        raise ValueError(f"training.imbalance.method: 'ogm_ge' compares each modality's confidence in the true "
                         f"class and needs task binary or multiclass, not {task.name}")
