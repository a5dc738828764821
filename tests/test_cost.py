"""Cost measurement: FLOPs of known layers, parameter parts, latency, peak memory, training time, the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import make_config
from torch import Tensor, nn

from polymodal.data.batch import Batch
from polymodal.encoders.base import Encoder
from polymodal.evaluation.contribution import split_dataset
from polymodal.evaluation.cost import (
    cost_table,
    count_flops,
    flops_per_record,
    latency_ms,
    measure_cost,
    model_batch,
    parameter_counts,
    peak_memory_bytes,
    replay_peak,
    train_seconds,
)
from polymodal.factory import parse_config
from polymodal.fusion.concat import ConcatFusion
from polymodal.layers import EncoderOutput
from polymodal.model import MultimodalModel, count_parameters
from polymodal.rundir import load_run
from polymodal.training.fit import train


class LinearEncoder(Encoder):
    modalities = ("vector",)
    derived = ("in_dim",)

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)
        self.out_dim = out_dim

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        return EncoderOutput(pooled=self.proj(inputs["values"]))


def linear_model() -> tuple[MultimodalModel, Batch]:
    """Encoders 4->3 and 7->5, concat fusion (one layer, 3+5 features + 2 flags -> 6), head 6->2; 10 records."""
    fusion = ConcatFusion({"a": 3, "b": 5}, hidden=6, layers=1)
    model = MultimodalModel({"a": LinearEncoder(4, 3), "b": LinearEncoder(7, 5)}, fusion, nn.Linear(6, 2))
    b = 10
    batch = Batch({"a": {"values": torch.randn(b, 4)}, "b": {"values": torch.randn(b, 7)}},
                  {"a": torch.ones(b, dtype=torch.bool), "b": torch.ones(b, dtype=torch.bool)}, index=torch.arange(b))
    return model, batch


def test_flops_of_a_linear_layer() -> None:
    assert count_flops(nn.Linear(8, 4), torch.randn(5, 8)) == 5 * 2 * 8 * 4


def test_flops_per_record_of_a_linear_only_model() -> None:
    model, batch = linear_model()
    assert flops_per_record(model, batch) == 2 * (4 * 3 + 7 * 5 + (3 + 5 + 2) * 6 + 6 * 2)


def test_parameter_parts_add_up() -> None:
    model, _ = linear_model()
    counts = parameter_counts(model)
    assert counts == {"total": count_parameters(model), "encoder_a": 4 * 3 + 3, "encoder_b": 7 * 5 + 5,
                      "fusion": 10 * 6 + 6, "head": 6 * 2 + 2}
    assert sum(v for k, v in counts.items() if k != "total") == counts["total"]


def test_replay_peak() -> None:
    assert replay_peak([(3.0, 30), (0.0, 100), (2.0, -100), (1.0, 50)]) == 150
    assert replay_peak([(0.0, -64), (1.0, 16)]) == 0  # frees of memory allocated before: never below zero start


def test_peak_memory_of_a_known_mlp() -> None:
    b, h = 64, 256
    model = nn.Sequential(nn.Linear(32, h), nn.GELU(), nn.Linear(h, 4))
    peak = peak_memory_bytes(model, torch.randn(b, 32))  # type: ignore[arg-type]
    hidden = b * h * 4  # one float32 (B, H) activation
    assert 2 * hidden <= peak <= 3 * hidden  # the linear output and the GELU output are alive together


def test_latency_is_positive() -> None:
    model, batch = linear_model()
    assert latency_ms(model, batch, repeats=3, warmup=1) > 0


def test_latency_stops_repeating_when_its_budget_is_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    model, batch = linear_model()
    passes: list[int] = []
    model.register_forward_hook(lambda *_: passes.append(1))
    latency_ms(model, batch, repeats=20, warmup=3, budget_s=0.0)
    assert len(passes) == 4  # a spent budget: one warm-up and three timed passes, not 3 + 20
    passes.clear()
    latency_ms(model, batch, repeats=5, warmup=2, budget_s=None)
    assert len(passes) == 7


@pytest.fixture(scope="module")
def run_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cost") / "late"
    train(parse_config(make_config(data_dir, out, ["emb", "specs"], fusion="late", epochs=2)))
    return out


def test_measure_cost_of_a_trained_run(run_dir: Path) -> None:
    run = load_run(run_dir)
    data = split_dataset(run, "test")
    cost = measure_cost(run, data, batch_size=8, repeats=3)
    parts = [k for k in cost if k.startswith("params_") and k != "params_total"]
    assert set(parts) == {"params_encoder_emb", "params_encoder_specs", "params_fusion", "params_head"}
    assert sum(cost[k] for k in parts) == cost["params_total"] == count_parameters(run.model)
    assert cost["batch"] == min(8, len(data))
    assert cost["flops_per_record"] > 0 and cost["latency_ms_record"] > 0 and cost["latency_ms_batch"] > 0
    assert cost["peak_memory_mb"] > 0 and cost["weights_mb"] == pytest.approx(4 * cost["params_total"] / 2**20)
    recorded = json.loads((run_dir / "metrics.json").read_text())["train_seconds"]
    assert cost["train_seconds"] == recorded > 0
    assert cost["device"] == "cpu"


def test_flops_per_record_do_not_depend_on_batch_size(run_dir: Path) -> None:
    run = load_run(run_dir)
    data = split_dataset(run, "test")
    small, large = model_batch(run, data, 2), model_batch(run, data, 8)
    assert flops_per_record(run.model, small) == flops_per_record(run.model, large)


def test_train_seconds_missing(tmp_path: Path) -> None:
    assert train_seconds(tmp_path) is None


def test_cost_table(run_dir: Path) -> None:
    table = cost_table([run_dir, load_run(run_dir)], batch_size=4, repeats=2)
    assert list(table.index) == ["late", str(run_dir)]  # a second run of the same name is named by its path
    assert {"params_total", "flops_per_record", "latency_ms_record", "latency_ms_batch", "peak_memory_mb",
            "train_seconds"} <= set(table.columns)
    assert (table["params_total"] > 0).all()
