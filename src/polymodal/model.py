"""Composition: per-modality encoders + one fusion + a task head (+ objectives), with named outputs."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from polymodal.data.batch import Batch
from polymodal.encoders import Encoder
from polymodal.features.precomputed import as_output
from polymodal.fusion import Fusion
from polymodal.generation.decoders import SequenceHead
from polymodal.layers import EncoderOutput
from polymodal.objectives import Contrastive, Objective
from polymodal.output import Output


class MultimodalModel(nn.Module):
    """`MultimodalModel(encoders, fusion, head, objectives)`: encoders by modality name, one fusion, one head.

    Args:
        encoders: one encoder per modality name.
        fusion: a fusion whose `in_dims` covers exactly these modalities.
        head: maps (B, fusion.out_dim) to (B, K).
        objectives: objectives by name, part of the model so that their weights are saved with it; the one
            named "contrastive" also gives `Output.embeddings`.
        placeholders: learn one vector per modality that replaces its features (and tokens) where it is missing;
            the fusion then sees every modality as present. Without them, missing modalities are masked.
    """

    def __init__(self, encoders: Mapping[str, Encoder], fusion: Fusion, head: nn.Module,
                 objectives: Mapping[str, Objective] | None = None, placeholders: bool = False) -> None:
        super().__init__()
        if set(encoders) != set(fusion.in_dims):
            raise ValueError(f"encoders {sorted(encoders)} and fusion inputs {sorted(fusion.in_dims)} differ")
        self.encoders = nn.ModuleDict(dict(encoders))
        self.fusion = fusion
        self.head = head
        self.objectives = nn.ModuleDict(dict(objectives or {}))
        self.placeholders = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(e.out_dim)) for m, e in encoders.items()} if placeholders else {})

    @property
    def modalities(self) -> list[str]:
        return list(self.encoders)

    def encode(self, batch: Batch) -> dict[str, EncoderOutput]:
        """Each encoder's output; a modality whose batch carries cached features (frozen encoder) skips it."""
        return {m: as_output(batch.features[m]) if m in batch.features else enc(batch.inputs[m])
                for m, enc in self.encoders.items()}

    @property
    def contrastive(self) -> Contrastive | None:
        obj = self.objectives["contrastive"] if "contrastive" in self.objectives else None
        return obj if isinstance(obj, Contrastive) else None

    def embeddings(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> dict[str, Tensor] | None:
        """Contrastive embeddings (B, E) of the given pooled features, NaN where a modality is missing."""
        if self.contrastive is None:
            return None
        z = self.contrastive.embed(features)
        return {m: torch.where(present[m][:, None], e, float("nan")) for m, e in z.items()}

    def fill_missing(self, encoded: dict[str, EncoderOutput], present: Mapping[str, Tensor]
                     ) -> tuple[dict[str, EncoderOutput], dict[str, Tensor]]:
        """With placeholders, substitute them for missing modalities and mark everything present."""
        if not len(self.placeholders):
            return encoded, dict(present)
        filled = {m: with_placeholder(e, present[m], self.placeholders[m]) for m, e in encoded.items()}
        return filled, {m: torch.ones_like(p) for m, p in present.items()}

    def forward(self, batch: Batch) -> Output:
        encoded, present = self.fill_missing(self.encode(batch), batch.present)
        fused = self.fusion(encoded, present)
        per = fused.per_modality
        features = {m: e.pooled for m, e in encoded.items()}
        if isinstance(self.head, SequenceHead):
            logits, sequences = self.head(fused, encoded, present, batch.target)
            return Output(logits=logits, fused=fused.fused, features=features, aux_losses=fused.aux_losses,
                          embeddings=self.embeddings(features, batch.present), sequences=sequences)
        modality_logits = None if per is None else {m: self.head(h) for m, h in per.items()}
        decision = self.fusion.decide(self.head(fused.fused), modality_logits, present, fused.reliability)
        aux = dict(fused.aux_losses)
        if self.training and batch.target is not None:
            aux.update(self.fusion.target_losses(decision, modality_logits, present, batch.target, batch.index))
        return Output(
            logits=decision.logits,
            fused=fused.fused,
            features=features,
            modality_logits=modality_logits,
            uncertainty=decision.uncertainty,
            aux_losses=aux,
            embeddings=self.embeddings(features, batch.present),
        )


def with_placeholder(out: EncoderOutput, present: Tensor, placeholder: Tensor) -> EncoderOutput:
    """Replace a missing record's pooled features by `placeholder` (D,) and its tokens by one placeholder token."""
    keep = present[:, None]  # (B, 1)
    pooled = torch.where(keep, out.pooled, placeholder.expand_as(out.pooled))  # (B, D)
    if out.tokens is None:
        return EncoderOutput(pooled)
    tokens = torch.where(keep[..., None], out.tokens, placeholder.expand_as(out.tokens))  # (B, T, D)
    mask = torch.ones(out.tokens.shape[:2], dtype=torch.bool, device=pooled.device) if out.mask is None else out.mask
    first = torch.zeros_like(mask)
    first[:, 0] = True
    return EncoderOutput(pooled, tokens, torch.where(keep, mask, first))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
