"""Issue 14, training at the cost of a hand-written loop: the cheaper ways of training keep what they
replace (epoch losses as weighted means, AdamW's result, batches as they were). Nothing here is timed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import make_config
from torch import nn

from polymodal.data.batch import Batch
from polymodal.evaluation.inference import predict_outputs
from polymodal.factory import parse_config
from polymodal.predictor import Predictor
from polymodal.training.fit import prepare, train
from polymodal.training.module import fused_adam


def test_validation_loss_is_logged_once_per_epoch_as_the_mean_over_records(data_dir: Path, tmp_path: Path) -> None:
    config = parse_config(make_config(data_dir, tmp_path / "run", ["emb", "specs"], epochs=1, batch_size=5))
    train(config, report=False)
    log = pd.read_csv(tmp_path / "run" / "logs" / "metrics.csv")
    logged = log["val_loss"].dropna()
    assert len(logged) == 1  # one value per epoch, not one per step
    run = Predictor.load(tmp_path / "run").run  # one epoch: its weights are the ones validated
    prep = prepare(config)
    outputs, target = predict_outputs(run.model, run.processors, prep.datasets["val"])
    assert float(logged.iloc[0]) == pytest.approx(float(prep.task.loss(outputs.logits, target)), rel=1e-4)


def groups(*params: nn.Parameter) -> list[dict]:  # type: ignore[type-arg]
    return [{"params": list(params), "weight_decay": 0.0}]


def test_adamw_runs_fused_for_float32_parameters_without_a_float16_scaler() -> None:
    weight = nn.Parameter(torch.randn(3, 2))
    assert fused_adam(groups(weight), "32-true") is True
    assert fused_adam(groups(weight), "bf16-mixed") is True
    assert fused_adam(groups(weight), "16-mixed") is None  # the loss scaler steps the optimizer itself
    assert fused_adam(groups(nn.Parameter(torch.randn(3, dtype=torch.float64))), "64-true") is None
    assert fused_adam([], "32-true") is None


def test_fused_adamw_takes_the_steps_of_the_plain_one() -> None:
    torch.manual_seed(0)
    a = nn.Linear(4, 3)
    b = nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    plain = torch.optim.AdamW(a.parameters(), lr=1e-2, weight_decay=1e-2)
    fused = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=1e-2, fused=fused_adam(groups(*b.parameters()),
                                                                                             "32-true"))
    for _ in range(5):
        x = torch.randn(8, 4)
        for model, opt in ((a, plain), (b, fused)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


def test_a_batch_already_on_the_device_is_passed_through() -> None:
    from polymodal.training.module import PolymodalModule

    batch = Batch({"a": {"values": torch.ones(2, 3)}}, {"a": torch.ones(2, dtype=torch.bool)}, torch.zeros(2),
                  torch.arange(2))
    moved = PolymodalModule.transfer_batch_to_device(None, batch, torch.device("cpu"), 0)  # type: ignore[arg-type]
    assert moved is batch
    assert moved.inputs["a"]["values"] is batch.inputs["a"]["values"]


def test_runs_over_one_decoded_table_train_as_if_each_decoded_it(data_dir: Path, tmp_path: Path) -> None:
    both = prepare(parse_config(make_config(data_dir, tmp_path / "data", ["emb", "specs"])))
    config = parse_config(make_config(data_dir, tmp_path / "own", ["emb"], epochs=2))
    own = train(config, report=False)
    shared = train(config.model_copy(update={"output_dir": str(tmp_path / "shared")}), report=False,
                   prepared=both.select(["emb"]))
    assert shared.metrics == own.metrics
    assert set(both.datasets["train"].present) == {"emb", "specs"}  # the shared data is left whole
    saved = (tmp_path / "shared" / "processors.json").read_text()
    assert saved == (tmp_path / "own" / "processors.json").read_text()
