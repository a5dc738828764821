"""The task-head contract: what the model asks of every head, whatever the task.

`MultimodalModel` hands each head the fusion, its output, the encoder outputs, the presence masks and the batch's
target, and takes back a `HeadOutput`; it never asks which kind of head it holds. A classification or regression
head (`LinearHead`) maps the fused representation (and the fusion's per-modality branches) to logits and lets the
fusion decide; the generation head (`polymodal.generation.decoders.SequenceHead`) decodes a token sequence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import Tensor, nn

from polymodal.fusion.base import Fusion, FusionOutput
from polymodal.layers import EncoderOutput


@dataclass
class HeadOutput:
    """What a head gives the model's `Output` (see there for each field)."""

    logits: Tensor
    modality_logits: dict[str, Tensor] | None = None
    uncertainty: dict[str, Tensor] | None = None
    aux_losses: dict[str, Tensor] = field(default_factory=dict)
    sequences: Tensor | None = None


class Head(nn.Module):
    """A task head: `decode` turns the fusion's output into the task's outputs (its own auxiliary losses only;
    the model adds the fusion's).

    A head that export cannot trace as one graph from inputs to logits says why in `not_exportable`.
    """

    @property
    def not_exportable(self) -> str | None:
        """Why export cannot trace this head as one graph from inputs to logits (None: it can)."""
        return None

    def decode(self, fusion: Fusion, fused: FusionOutput, encoded: Mapping[str, EncoderOutput],
               present: Mapping[str, Tensor], target: Tensor | None, index: Tensor | None) -> HeadOutput:
        raise NotImplementedError


class LinearHead(nn.Linear, Head):
    """(B, D_fused) -> (B, K) logits; the fusion's per-modality branches go through the same layer, then the fusion
    decides the final logits (and, in training, adds its target losses). K may be 0 (retrieval: only objectives)."""

    @property
    def not_exportable(self) -> str | None:
        return "it has no task head outputs (only its objectives train)" if self.out_features == 0 else None

    def decode(self, fusion: Fusion, fused: FusionOutput, encoded: Mapping[str, EncoderOutput],
               present: Mapping[str, Tensor], target: Tensor | None, index: Tensor | None) -> HeadOutput:
        per = fused.per_modality
        modality_logits = None if per is None else {m: self(h) for m, h in per.items()}  # (B, K) each
        decision = fusion.decide(self(fused.fused), modality_logits, present, fused.reliability)
        aux = {}
        if self.training and target is not None:
            aux = fusion.target_losses(decision, modality_logits, present, target, index)  # type: ignore[arg-type]
        return HeadOutput(decision.logits, modality_logits, decision.uncertainty, aux)


def as_head(module: nn.Module) -> Head:
    """`module` if it is a Head; a plain `nn.Linear` becomes a LinearHead holding the same parameters (no new
    random draws, the same state-dict keys)."""
    if isinstance(module, Head):
        return module
    if type(module) is nn.Linear:
        head = nn.utils.skip_init(LinearHead, module.in_features, module.out_features, bias=module.bias is not None,
                                  device=module.weight.device, dtype=module.weight.dtype)
        head.weight = module.weight
        head.bias = module.bias
        return head
    raise TypeError(f"a model's head must be a polymodal.heads.Head (e.g. LinearHead), not {type(module).__name__}")
