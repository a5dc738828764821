"""When a whole model fails to export, export its parts one by one to name the one at fault."""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from polymodal.encoders.base import Encoder
from polymodal.export.graph import FlatModel, exportable
from polymodal.layers import EncoderOutput


class EncoderPart(nn.Module):
    """One encoder over a flat tuple of its input tensors; returns pooled (and tokens, mask where it has them)."""

    def __init__(self, encoder: Encoder, keys: Sequence[str]) -> None:
        super().__init__()
        self.encoder = encoder
        self.keys = list(keys)

    def forward(self, *xs: Tensor) -> tuple[Tensor, ...]:
        out = self.encoder(dict(zip(self.keys, xs)))
        return tuple(t for t in (out.pooled, out.tokens, out.mask) if t is not None)


class FusionPart(nn.Module):
    """Fusion + head over flat encoder outputs (per modality: pooled[, tokens[, mask]]) and presence masks."""

    def __init__(self, flat: FlatModel, arity: dict[str, int]) -> None:
        super().__init__()
        self.model = flat.model
        self.arity = arity

    def forward(self, *xs: Tensor) -> tuple[Tensor, Tensor]:
        it = iter(xs)
        encoded = {m: EncoderOutput(*[next(it) for _ in range(n)]) for m, n in self.arity.items()}
        present = {m: next(it) for m in self.arity}
        encoded, present = self.model.fill_missing(encoded, present)
        fused = self.model.fusion(encoded, present).fused  # (B, D_fused)
        return self.model.head(fused), fused


def exports(module: nn.Module, args: tuple[Tensor, ...], opset: int, exporter: str) -> bool:
    """Whether `module` exports to ONNX with the given exporter (on these example arguments)."""
    try:
        with exportable(module) as friendly:
            if exporter == "legacy":
                torch.onnx.export(friendly, args, io.BytesIO(), opset_version=opset, dynamo=False)
            else:
                torch.onnx.export(friendly, args, opset_version=opset, dynamo=True, verbose=False)
    except Exception:  # noqa: BLE001  (any failure means: not exportable)
        return False
    return True


def locate_failure(flat: FlatModel, args: tuple[Tensor, ...], opset: int, exporter: str) -> str:
    """A phrase naming the first part of the model that does not export ('encoder 'title' (TextGRU)'...)."""
    batch = flat.unflatten(args)
    arity: dict[str, int] = {}
    encoded: list[Tensor] = []
    model = flat.model
    for m, encoder in model.encoders.items():
        part = EncoderPart(encoder, flat.keys[m]).eval()
        xs = tuple(batch.inputs[m][k] for k in flat.keys[m])
        if not exports(part, xs, opset, exporter):
            return f"encoder {m!r} ({type(encoder).__name__})"
        with torch.no_grad():
            outs = part(*xs)
        arity[m] = len(outs)
        encoded += outs
    present = tuple(batch.present[m] for m in arity)
    if not exports(FusionPart(flat, arity).eval(), (*encoded, *present), opset, exporter):
        return f"the fusion ({type(model.fusion).__name__}) or task head"
    return "the model as a whole (each encoder and the fusion export on their own)"

