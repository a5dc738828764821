"""Composition: per-modality encoders + one fusion + a task head, with named outputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import Tensor, nn

from polymodal.config import Component, Config
from polymodal.data.batch import Batch
from polymodal.encoders import ENCODERS, Encoder, default_encoder
from polymodal.encoders.base import EncoderOutput
from polymodal.fusion import FUSIONS, Fusion
from polymodal.processors import Processor


@dataclass
class Output:
    """Named model outputs that losses and metrics take by name.

    Attributes:
        logits: (B, K) task outputs.
        fused: (B, D_fused) joint representation.
        features: per modality, pooled encoder features (B, D_m).
        modality_logits: per modality (B, K) predictions, for fusions that keep per-modality branches.
        aux_losses: auxiliary training losses by name (from the fusion), added to the task loss.
    """

    logits: Tensor
    fused: Tensor
    features: dict[str, Tensor]
    modality_logits: dict[str, Tensor] | None = None
    aux_losses: dict[str, Tensor] = field(default_factory=dict)


class MultimodalModel(nn.Module):
    """`MultimodalModel(encoders, fusion, head)`: encoders by modality name, one fusion, one head.

    Args:
        encoders: one encoder per modality name.
        fusion: a fusion whose `in_dims` covers exactly these modalities.
        head: maps (B, fusion.out_dim) to (B, K).
    """

    def __init__(self, encoders: Mapping[str, Encoder], fusion: Fusion, head: nn.Module) -> None:
        super().__init__()
        if set(encoders) != set(fusion.in_dims):
            raise ValueError(f"encoders {sorted(encoders)} and fusion inputs {sorted(fusion.in_dims)} differ")
        self.encoders = nn.ModuleDict(dict(encoders))
        self.fusion = fusion
        self.head = head

    @property
    def modalities(self) -> list[str]:
        return list(self.encoders)

    def encode(self, batch: Batch) -> dict[str, EncoderOutput]:
        return {m: enc(batch.inputs[m]) for m, enc in self.encoders.items()}

    def forward(self, batch: Batch) -> Output:
        encoded = self.encode(batch)
        fused = self.fusion(encoded, batch.present)
        per = fused.per_modality
        return Output(
            logits=self.head(fused.fused),
            fused=fused.fused,
            features={m: e.pooled for m, e in encoded.items()},
            modality_logits=None if per is None else {m: self.head(h) for m, h in per.items()},
            aux_losses=fused.aux_losses,
        )


def build_encoder(spec_type: str, component: Component | None, processor: Processor) -> Encoder:
    component = component or Component(name=default_encoder(spec_type))
    return ENCODERS.build(component.name, user=component.options, **processor.encoder_inputs())


def build_model(config: Config, processors: Mapping[str, Processor], num_outputs: int) -> MultimodalModel:
    """Build the model a config describes, with widths derived from fitted processors and encoders."""
    encoders = {m: build_encoder(spec.type, spec.encoder, processors[m]) for m, spec in config.modalities.items()}
    fusion = FUSIONS.build(config.fusion.name, user=config.fusion.options,
                           in_dims={m: e.out_dim for m, e in encoders.items()})
    return MultimodalModel(encoders, fusion, nn.Linear(fusion.out_dim, num_outputs))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
