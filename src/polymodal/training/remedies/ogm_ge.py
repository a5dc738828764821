"""`ogm_ge`: on-the-fly gradient modulation with generalisation enhancement (Peng et al., CVPR 2022).

Before each optimizer step, encoder m's gradient is scaled by k_m, a function of rho_m = s_m / mean of the other
modalities' s, where s is the mean true-class confidence on the batch(es) of that step; the weaker modalities keep
k = 1 (the N-modality form of the paper's two-modality ratio). Any encoder: every parameter of an encoder, whatever
its layers (the published code only touches 4-D convolution weights). Two forms:

- `paper` (Eq. 10, and the authors' code): a modality whose ratio exceeds 1 gets k_m = 1 - tanh(alpha * rho_m);
  s_m is the mean true-class probability of the fused model's own prediction from modality m alone (the
  late-fusion branches where the fusion has them, else the fusion and head run with every other modality marked
  missing: for concatenation followed by a linear classifier, the paper's W_m h_m share of the logits); the
  modulation runs in the epochs `ogm_start`..`ogm_end` only (the authors' modulation_starts/ends).
- `continuous` (polymodal's first form): k_m = 1 - tanh(alpha * (rho_m - 1)), continuous at rho = 1, confidences
  from the diagnostic linear probes (or the late-fusion branches), every epoch.

Generalisation enhancement (`ge_noise`): Gaussian noise with the standard deviation of the unmodulated gradient is
added to every encoder's gradient, as in the reference code. Logged: `ogm_coeff_<m>` (mean k per modulated
epoch). The paper trains with SGD, where scaling the gradient scales the step; Adam(W) divides by a running
gradient scale, so a slowly varying k mostly cancels out. `ogm_scale: step` therefore applies the same modulation
to each encoder's parameter change after the optimizer step (identical to the paper for plain SGD; the GE noise
still goes into the gradient).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from polymodal.config import ImbalanceConfig
from polymodal.data.batch import Batch
from polymodal.layers import EncoderOutput
from polymodal.model import MultimodalModel
from polymodal.output import Output
from polymodal.tasks import Binary, Multiclass, Task
from polymodal.training.remedies.base import REMEDIES, Params, Reduce, Remedy, pooled_trial


def ogm_coefficient(rho: float, alpha: float, form: str = "paper") -> float:
    """The gradient factor of a modality with confidence ratio `rho`: 1 unless it dominates (rho > 1)."""
    if rho <= 1.0:
        return 1.0
    return 1.0 - math.tanh(alpha * (rho if form == "paper" else rho - 1.0))


def ogm_coefficients(confidence: Mapping[str, float], alpha: float, form: str = "paper") -> dict[str, float]:
    """OGM-GE's gradient factor per modality from rho_m = s_m / mean(s of the others) (see `ogm_coefficient`)."""
    out = {}
    for m, s in confidence.items():
        others = [v for k, v in confidence.items() if k != m]
        rho = s / max(sum(others) / len(others), 1e-8) if others else 1.0
        out[m] = ogm_coefficient(rho, alpha, form)
    return out


def in_window(epoch: int, start: int, end: int | None) -> bool:
    """Whether `epoch` (0-based) lies in the modulation window [start, end] (end None: open)."""
    return start <= epoch and (end is None or epoch <= end)


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


def fused_unimodal_logits(model: MultimodalModel, features: Mapping[str, Tensor], present: Mapping[str, Tensor]
                          ) -> dict[str, Tensor]:
    """Per modality m, the model's logits (B, K) from m alone: fusion and head on the detached pooled features
    with every other modality marked missing. Evaluation mode (no dropout draws), no gradients."""
    modules = (model.fusion, model.head)
    modes = [m.training for m in modules]
    encoded = {m: EncoderOutput(x.detach()) for m, x in features.items()}
    out = {}
    try:
        with torch.no_grad():
            for m in encoded:
                alone = {k: p & (k == m) for k, p in present.items()}  # (B,) per modality
                filled, flags = model.fill_missing(encoded, alone)
                out[m] = model.head.eval()(model.fusion.eval()(filled, flags).fused)  # (B, K)
    finally:
        for module, mode in zip(modules, modes):
            module.train(mode)
    return out


@REMEDIES.register("ogm_ge")
class OGMGE(Remedy):
    """Scales each dominant encoder's gradient (or parameter change) by its k; see the module docstring."""

    confidence = True

    def __init__(self, model: MultimodalModel, task: Task, config: ImbalanceConfig, seed: int = 0,
                 branches: bool = False) -> None:
        super().__init__(model, task, config, seed, branches)
        self.own_scores = config.ogm_form == "paper"  # per instance: depends on the form
        self._model = [model] if self.own_scores and not branches else []  # a list: not a submodule
        if self._model and pooled_trial(model) is None:
            raise ValueError(f"training.imbalance.ogm_form: 'paper' reads each modality's prediction from the fused "
                             f"model, but fusion {type(model.fusion).__name__} needs tokens; use ogm_form: "
                             "continuous (confidences from linear probes) or another fusion")
        self._generator: torch.Generator | None = None
        self._pending: dict[str, tuple[float, list[Tensor]]] = {}
        self._step: dict[str, list[Tensor]] = {}
        self.reset_train()

    @classmethod
    def check_task(cls, task: Task, method: str) -> None:
        super().check_task(task, method)
        if not isinstance(task, (Multiclass, Binary)):
            raise ValueError(f"training.imbalance.method: 'ogm_ge' compares each modality's confidence in the true "
                             f"class and needs task binary or multiclass, not {task.name}")

    def unimodal_scores(self, out: Output, batch: Batch) -> dict[str, Tensor] | None:
        return fused_unimodal_logits(self._model[0], out.features, batch.present) if self._model else None

    def observe_confidence(self, modality: str, pair: Tensor) -> None:
        self._step.setdefault(modality, []).append(pair)

    def before_optimizer_step(self, params: Params, reduce: Reduce, epoch: int) -> None:
        """The modulation, with this step's confidences summed over processes so that every replica scales alike
        (the paper form only within its epoch window)."""
        step, self._step = self._step, {}
        c = self.config
        if not (c.ogm_form == "continuous" or in_window(epoch, c.ogm_start, c.ogm_end)):
            return
        confidence = {m: reduce(torch.stack(v).sum(0), "sum") for m, v in step.items()}
        scores = {m: float(s[0] / s[1]) for m, s in confidence.items() if s[1] > 0}
        on_gradient = c.ogm_scale == "gradient"
        for m, k in ogm_coefficients(scores, c.alpha, c.ogm_form).items():
            own = params[m]
            modulate_(own, k if on_gradient else 1.0, self._noise(own) if c.ge_noise else None)
            if not on_gradient:
                self._pending[m] = (k, [p.detach().clone() for p in own])
            self._coefficients[m] = self._coefficients.get(m, 0.0) + torch.tensor([k, 1.0])

    def after_optimizer_step(self, params: Params) -> None:
        """With `ogm_scale: step`: scale each encoder's parameter change of this step by its k."""
        with torch.no_grad():
            for m, (k, before) in self._pending.items():
                for p, old in zip(params[m], before):
                    p.sub_(old).mul_(k).add_(old)  # old + k * (new - old)
        self._pending = {}

    def _noise(self, params: Sequence[nn.Parameter]) -> torch.Generator:
        """The GE noise's own random stream: seeded alike in every process, so that replicas stay identical."""
        if self._generator is None:
            self._generator = torch.Generator(params[0].device).manual_seed(self.seed)
        return self._generator

    def train_epoch_end(self, reduce: Reduce) -> dict[str, Tensor]:
        return {f"ogm_coeff_{m}": v[0] / v[1] for m, v in self._coefficients.items()}

    def reset_train(self) -> None:
        self._coefficients: dict[str, Tensor] = {}
