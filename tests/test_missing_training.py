"""Training for missing modalities: per-record modality dropout and learned placeholders."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from conftest import make_config

from polymodal.data.batch import Batch
from polymodal.factory import parse_config
from polymodal.layers import EncoderOutput
from polymodal.model import with_placeholder
from polymodal.predictor import Predictor
from polymodal.training.fit import train
from polymodal.training.module import modality_dropout


def batch_of(present: dict[str, list[bool]]) -> Batch:
    return Batch({m: {} for m in present}, {m: torch.tensor(v) for m, v in present.items()},
                 index=torch.arange(len(next(iter(present.values())))))


def test_dropout_rates_and_at_least_one_kept() -> None:
    torch.manual_seed(0)
    n = 4000
    batch = batch_of({"a": [True] * n, "b": [True] * n, "c": [i % 2 == 0 for i in range(n)]})
    assert modality_dropout(batch, 0.0) is batch
    everything = modality_dropout(batch, 1.0)
    kept = torch.stack(list(everything.present.values()), 1)
    assert (kept.sum(1) == 1).all()  # all dropped -> exactly one given back
    half = modality_dropout(batch, {"a": 0.5})
    assert abs(half.present["a"].float().mean().item() - 0.5) < 0.05 and half.present["b"].all()
    assert torch.equal(half.present["c"], batch.present["c"])
    lone = batch_of({"a": [True, False], "b": [False, False]})
    out = modality_dropout(lone, 1.0)
    assert out.present["a"].tolist() == [True, False] and out.present["b"].tolist() == [False, False]


def test_placeholder_replaces_missing_features_and_tokens() -> None:
    tokens = torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    out = with_placeholder(EncoderOutput(torch.randn(2, 4), tokens, mask), torch.tensor([True, False]),
                           torch.full((4,), 7.0))
    assert torch.equal(out.pooled[1], torch.full((4,), 7.0)) and torch.equal(out.tokens[1], torch.full((3, 4), 7.0))
    assert out.mask.tolist() == [[True, True, False], [True, False, False]]


def test_training_with_dropout_and_placeholders(data_dir: Path, tmp_path: Path) -> None:
    cfg = make_config(data_dir, tmp_path / "run", ["emb", "specs"], epochs=2, modality_dropout={"emb": 0.5})
    cfg["placeholders"] = True
    train(parse_config(cfg))
    predictor = Predictor.load(tmp_path / "run")
    placeholder = predictor.run.model.placeholders["emb"]
    assert placeholder.abs().sum() > 0  # it was trained (initialised at zero)
    frame = pd.read_parquet(data_dir / "data.parquet").head(4)
    missing = frame.assign(emb=None)
    full, hidden = predictor.outputs(frame), predictor.outputs(missing)
    assert not torch.allclose(full.logits, hidden.logits)  # the placeholder, not the vector, reached the fusion
    assert len(predictor.predict(missing)) == 4
