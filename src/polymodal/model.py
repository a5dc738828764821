"""Composition: per-modality encoders + one fusion + a task head (+ objectives), with named outputs."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from polymodal.data.batch import Batch
from polymodal.encoders import Encoder
from polymodal.features.precomputed import as_output
from polymodal.fusion import Fusion
from polymodal.heads import Head, as_head
from polymodal.layers import EncoderOutput
from polymodal.objectives import Contrastive, Objective
from polymodal.output import Output


class MultimodalModel(nn.Module):
    """`MultimodalModel(encoders, fusion, head, objectives)`: encoders by modality name, one fusion, one head.

    Args:
        encoders: one encoder per modality name.
        fusion: a fusion whose `in_dims` covers exactly these modalities.
        head: a task head (`polymodal.heads.Head`: e.g. a LinearHead mapping (B, fusion.out_dim) to (B, K), or
            generation's SequenceHead); a plain `nn.Linear` is taken as a LinearHead.
        objectives: objectives by name, part of the model so that their weights are saved with it; the one
            named "contrastive" also gives `Output.embeddings`.
        placeholders: learn one vector per modality that replaces its features (and tokens) where it is missing;
            the fusion then sees every modality as present. Without them, missing modalities are masked.
    """

    def __init__(self, encoders: Mapping[str, Encoder], fusion: Fusion, head: Head | nn.Linear,
                 objectives: Mapping[str, Objective] | None = None, placeholders: bool = False) -> None:
        super().__init__()
        if set(encoders) != set(fusion.in_dims):
            raise ValueError(f"encoders {sorted(encoders)} and fusion inputs {sorted(fusion.in_dims)} differ")
        self.encoders = nn.ModuleDict(dict(encoders))
        self.fusion = fusion
        self.head = as_head(head)
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
        features = {m: e.pooled for m, e in encoded.items()}
        head = self.head.decode(self.fusion, fused, encoded, present, batch.target, batch.index)
        return Output(
            logits=head.logits,
            fused=fused.fused,
            features=features,
            modality_logits=head.modality_logits,
            uncertainty=head.uncertainty,
            aux_losses={**fused.aux_losses, **head.aux_losses},
            embeddings=self.embeddings(features, batch.present),
            sequences=head.sequences,
            stats={m: e.stats for m, e in encoded.items() if e.stats is not None},
        )


def with_placeholder(out: EncoderOutput, present: Tensor, placeholder: Tensor) -> EncoderOutput:
    """Replace a missing record's pooled features by `placeholder` (D,) and its tokens by one placeholder token."""
    keep = present[:, None]  # (B, 1)
    pooled = torch.where(keep, out.pooled, placeholder.expand_as(out.pooled))  # (B, D)
    if out.tokens is None:
        return EncoderOutput(pooled, stats=out.stats)
    tokens = torch.where(keep[..., None], out.tokens, placeholder.expand_as(out.tokens))  # (B, T, D)
    mask = torch.ones(out.tokens.shape[:2], dtype=torch.bool, device=pooled.device) if out.mask is None else out.mask
    first = torch.zeros_like(mask)
    first[:, 0] = True
    return EncoderOutput(pooled, tokens, torch.where(keep, mask, first), out.stats)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
