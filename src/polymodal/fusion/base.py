"""Fusion contract: encoder outputs by modality name + presence masks in, (B, D_fused) out.

Every method works for 2..N modalities, derives its widths from the encoders' `out_dim`, and must not let a
missing modality's (garbage) content influence its output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from polymodal.layers import EncoderOutput
from polymodal.registry import Registry


@dataclass
class FusionOutput:
    """What every fusion returns.

    Attributes:
        fused: (B, D_fused) the joint representation fed to the task head.
        per_modality: optional (B, D_fused) features per modality in the fused space (late fusion), from
            which the model derives per-modality predictions with the same head.
        tokens: optional (B, T, D) fused tokens with `mask`.
        aux_losses: auxiliary losses the method trains with (e.g. a KL term), already weighted; the trainer
            adds them to the task loss.
        reliability: optional (B,) per modality in [0, 1]: how far the method trusts each record's input of
            that modality (reliability-gated fusions); the model hands it to `decide`.
    """

    fused: Tensor
    per_modality: dict[str, Tensor] | None = None
    tokens: Tensor | None = None
    mask: Tensor | None = None
    aux_losses: dict[str, Tensor] = field(default_factory=dict)
    reliability: dict[str, Tensor] | None = None


@dataclass
class Decision:
    """What `Fusion.decide` returns.

    Attributes:
        logits: (B, K) final task outputs.
        uncertainty: optional (B,) per modality: the method's own uncertainty about that modality's input
            (higher = trusted less), NaN where the modality is missing.
    """

    logits: Tensor
    uncertainty: dict[str, Tensor] | None = None


@dataclass
class Calibration:
    """The validation split as seen by a trained model, for `Fusion.calibrate` (evaluation builds it).

    Attributes:
        means: per modality, (C, D) class means of the encoder's pooled validation features (one row when the
            task has no single-label classes).
        precision: per modality, (D, D) inverse of the shrunk shared covariance of those features.
        distances: per modality, (N_m,) squared Mahalanobis distances of the present validation records to the
            closest class mean.
        modality_logits: per modality, (N, K) the model's per-modality logits (None without branches).
        present: per modality, (N,) which validation records have it.
        target: (N,) class indices of a single-label classification task, else None.
    """

    means: dict[str, Tensor]
    precision: dict[str, Tensor]
    distances: dict[str, Tensor]
    modality_logits: dict[str, Tensor] | None
    present: dict[str, Tensor]
    target: Tensor | None


class Fusion(nn.Module):
    """Base class. Constructors take `in_dims` (width per modality, derived) plus options; set `out_dim`."""

    out_dim: int

    def __init__(self, in_dims: Mapping[str, int]) -> None:
        super().__init__()
        if not in_dims:
            raise ValueError("a fusion needs at least one modality")
        self.in_dims = dict(in_dims)

    @property
    def modalities(self) -> list[str]:
        return list(self.in_dims)

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> FusionOutput:
        raise NotImplementedError  # pragma: no cover

    def decide(self, logits: Tensor, modality_logits: Mapping[str, Tensor] | None,
               present: Mapping[str, Tensor], reliability: Mapping[str, Tensor] | None = None) -> Decision:
        """The final (B, K) logits from the head's output on `fused` and the per-modality logits.

        Decision-level methods (evidence combination, confidence-weighted sums) override this; the default
        keeps the head's output and reports no uncertainty of its own. `reliability` is what `forward` put
        in `FusionOutput.reliability`.
        """
        return Decision(logits)

    def calibrate(self, validation: Calibration) -> None:
        """Fit prediction-time state (buffers, saved with the weights) on the validation split after training.

        Called once by training before the weights are saved; the default has nothing to calibrate.
        """

    def target_losses(self, decision: Decision, modality_logits: Mapping[str, Tensor] | None,
                      present: Mapping[str, Tensor], target: Tensor, index: Tensor) -> dict[str, Tensor]:
        """Auxiliary training losses that need the target (and each record's dataset `index`), weighted.

        Called by the model in training only, after `decide`; the default has none.
        """
        return {}


FUSIONS: Registry[Fusion] = Registry("fusion")


def zero_missing(x: Tensor, present: Tensor) -> Tensor:
    """Replace rows of (B, ...) whose presence (B,) is False by zeros (NaN-safe, unlike multiplying)."""
    keep = present.view(-1, *([1] * (x.dim() - 1)))
    return torch.where(keep, x, torch.zeros_like(x))


def modality_tokens(out: EncoderOutput, present: Tensor) -> tuple[Tensor, Tensor]:
    """(B, T, D) tokens of one modality and their (B, T) mask, True where a token is real and present.

    Without tokens the pooled vector is the single token. Padding and missing records are replaced by zeros
    (NaN-safe), so their content cannot reach any arithmetic downstream.
    """
    tokens = out.pooled[:, None] if out.tokens is None else out.tokens  # (B, T, D)
    real = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)  # (B, T)
    if out.tokens is not None and out.mask is not None:
        real = out.mask.bool()
    real = real & present.bool()[:, None]  # (B, T)
    return torch.where(real[..., None], tokens, torch.zeros_like(tokens)), real
