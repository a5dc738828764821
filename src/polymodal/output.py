"""`Output`: the model's named outputs, which tasks, objectives and metrics read by name."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class Output:
    """Named model outputs that losses and metrics take by name.

    Attributes:
        logits: (B, K) task outputs.
        fused: (B, D_fused) joint representation.
        features: per modality, pooled encoder features (B, D_m).
        modality_logits: per modality (B, K) predictions, for fusions that keep per-modality branches.
        uncertainty: per modality (B,) the fusion's own uncertainty about that input (tmc, qmf; None for
            fusions without one), NaN where the modality is missing.
        aux_losses: auxiliary training losses by name (from the fusion), added to the task loss.
        embeddings: per modality, (B, E) L2-normalised embeddings in the shared space of the contrastive
            objective (None without one); rows of records missing that modality are NaN.
        stats: per modality, (B, S) the encoder's low-level input statistics (`EncoderOutput.stats`), for the
            modalities whose encoder gives them (outside training; not for frozen encoders' stored outputs).
        sequences: task generation, outside training: (B, S) generated token ids (logits are then the
            teacher-forced (B, L-1, V) logits of the target, (B, 0, V) without one).
    """

    logits: Tensor
    fused: Tensor
    features: dict[str, Tensor]
    modality_logits: dict[str, Tensor] | None = None
    uncertainty: dict[str, Tensor] | None = None
    aux_losses: dict[str, Tensor] = field(default_factory=dict)
    embeddings: dict[str, Tensor] | None = None
    sequences: Tensor | None = None
    stats: dict[str, Tensor] = field(default_factory=dict)
