"""The head contract: the model composes any Head through `decode`, without knowing which task it serves."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch
from test_imbalance import mlp_model, vector_batch
from torch import Tensor, nn

from polymodal.encoders.feedforward import VectorMLP
from polymodal.fusion import FUSIONS, Fusion, FusionOutput
from polymodal.heads import Head, HeadOutput, LinearHead, as_head
from polymodal.layers import EncoderOutput
from polymodal.model import MultimodalModel


class CountingHead(Head):
    """A head of a made-up task: one logit per record plus a 'sequence' of each record's present modalities."""

    def __init__(self, fused_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(fused_dim, 1)

    def decode(self, fusion: Fusion, fused: FusionOutput, encoded: Mapping[str, EncoderOutput],
               present: Mapping[str, Tensor], target: Tensor | None, index: Tensor | None) -> HeadOutput:
        counts = torch.stack([p.long() for p in present.values()], 1)  # (B, N)
        return HeadOutput(self.proj(fused.fused), sequences=counts, aux_losses={"head_l2": self.proj.weight.square().sum()})


def test_the_model_composes_any_head_through_decode() -> None:
    encoders = {"a": VectorMLP(4, 8, 8), "b": VectorMLP(4, 8, 8)}
    fusion = FUSIONS.build("concat", user={"hidden": 8}, in_dims={m: 8 for m in encoders})
    model = MultimodalModel(encoders, fusion, CountingHead(fusion.out_dim))
    batch = vector_batch(6)
    batch.inputs = {"a": batch.inputs["strong"], "b": batch.inputs["weak"]}
    batch.present = {"a": torch.ones(6, dtype=torch.bool), "b": torch.arange(6) % 2 == 0}
    out = model(batch)
    assert out.logits.shape == (6, 1) and out.modality_logits is None
    assert out.sequences.tolist() == [[1, 1], [1, 0]] * 3  # type: ignore[union-attr]
    assert "head_l2" in out.aux_losses  # the head's own auxiliary losses reach the output


def test_a_plain_linear_is_taken_as_a_linear_head_with_the_same_parameters() -> None:
    linear = nn.Linear(8, 3)
    state = torch.random.get_rng_state()
    head = as_head(linear)
    assert torch.equal(torch.random.get_rng_state(), state)  # no new draws: seeded runs stay the same
    assert isinstance(head, LinearHead) and head.weight is linear.weight and head.bias is linear.bias
    assert list(head.state_dict()) == list(linear.state_dict())
    model = mlp_model()
    assert isinstance(model.head, LinearHead) and "head.weight" in model.state_dict()
    with pytest.raises(TypeError, match="polymodal.heads.Head"):
        as_head(nn.Sequential(nn.Linear(8, 3)))


def test_linear_heads_say_whether_export_can_trace_them() -> None:
    assert LinearHead(8, 3).not_exportable is None
    assert "no task head outputs" in (LinearHead(8, 0).not_exportable or "")
