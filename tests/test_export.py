"""Export a trained run to ONNX / TorchScript: the exported model gives PyTorch's outputs, missing modalities
included; the manifest tells a consumer how to feed it; bad input gets a message naming what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_config

from polymodal.cli import main
from polymodal.encoders.feedforward import TabularMLP
from polymodal.export import ExportError, OnnxPredictor, TorchScriptPredictor, export_run
from polymodal.factory import parse_config
from polymodal.predictor import Predictor
from polymodal.training.fit import train

pytest.importorskip("onnxruntime")

MODALITIES = ["photo", "sound", "title", "specs"]  # image, audio, text, tabular
FUSIONS = ["concat", "late", "attention", "transformer", "low_rank", "gated"]
TOL = 1e-4


@pytest.fixture(scope="module")
def runs(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny trained runs by fusion name (trained on first use)."""
    return {}


def trained(runs: dict[str, Path], data_dir: Path, tmp: Path, fusion: str) -> Path:
    if fusion not in runs:
        out = tmp / f"run_{fusion}"
        train(parse_config(make_config(data_dir, out, MODALITIES, fusion=fusion, epochs=1, patience=None)))
        runs[fusion] = out
    return runs[fusion]


@pytest.fixture(scope="module")
def run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export_runs")


@pytest.fixture(scope="module")
def records(data_dir: Path) -> pd.DataFrame:
    """Test records; some lack their title, one lacks its tabular fields."""
    frame = pd.read_parquet(data_dir / "data.parquet").iloc[40:].reset_index(drop=True)
    frame.loc[::3, "title"] = None
    frame.loc[4, ["price", "brand"]] = None
    return frame


def assert_same_outputs(exported: OnnxPredictor | TorchScriptPredictor, reference: Predictor, records: pd.DataFrame,
                        root: Path) -> None:
    for drop in (frozenset(), frozenset({"sound"})):
        got = exported.outputs(records, root, drop)
        want = reference.outputs(records, root, drop)
        assert np.abs(got["logits"] - want.logits.numpy()).max() < TOL, drop
        assert np.abs(got["fused"] - want.fused.numpy()).max() < TOL, drop


@pytest.mark.parametrize("fusion", FUSIONS)
def test_onnx_export_matches_pytorch(fusion: str, runs: dict[str, Path], data_dir: Path, run_root: Path,
                                     records: pd.DataFrame) -> None:
    run = trained(runs, data_dir, run_root, fusion)
    result = export_run(run, "onnx", out=run_root / f"onnx_{fusion}")
    assert result.model_file.name == "model.onnx" and result.max_abs_diff < TOL
    predictor = OnnxPredictor(result.out_dir)
    reference = Predictor.load(run)
    assert_same_outputs(predictor, reference, records, data_dir)
    proba = predictor.predict_proba(records, data_dir)
    assert list(proba.columns) == ["x", "y", "z"]
    np.testing.assert_allclose(proba.to_numpy(), reference.predict_proba(records, data_dir).to_numpy(), atol=TOL)
    assert list(predictor.predict(records, data_dir)) == list(reference.predict(records, data_dir))


def test_torchscript_export_matches_pytorch(runs: dict[str, Path], data_dir: Path, run_root: Path,
                                            records: pd.DataFrame) -> None:
    run = trained(runs, data_dir, run_root, "gated")
    result = export_run(run, "torchscript", out=run_root / "ts_gated")
    assert result.model_file.name == "model.pt"
    predictor = TorchScriptPredictor(result.out_dir)
    assert_same_outputs(predictor, Predictor.load(run), records, data_dir)
    with pytest.raises(ValueError, match="torchscript export, not onnx"):
        OnnxPredictor(result.out_dir)


def test_manifest_tells_how_to_feed_the_model(runs: dict[str, Path], data_dir: Path, run_root: Path) -> None:
    import onnx

    run = trained(runs, data_dir, run_root, "concat")
    out = export_run(run, "onnx", out=run_root / "manifest").out_dir
    manifest = json.loads((out / "export.json").read_text())
    graph = onnx.load(str(out / "model.onnx")).graph
    assert [i["name"] for i in manifest["inputs"]] == [i.name for i in graph.input]
    assert [o["name"] for o in manifest["outputs"]] == [o.name for o in graph.output] == ["logits", "fused"]
    inputs = {i["name"]: i for i in manifest["inputs"]}
    assert inputs["photo.pixels"]["dtype"] == "float32" and inputs["photo.pixels"]["shape"] == ["batch", 1, 12, 12]
    assert inputs["title.ids"]["dtype"] == "int64" and inputs["title.ids"]["shape"] == ["batch", "title_length"]
    assert inputs["sound.mask"]["dtype"] == "bool" and inputs["sound.mask"]["min_size"] == {"sound_length": 4}
    assert {f"{m}.present" for m in MODALITIES} <= set(inputs)
    assert manifest["labels"] == ["x", "y", "z"] and manifest["task"] == "multiclass"
    assert manifest["outputs"][0]["shape"] == ["batch", 3]
    assert "resize to 12x12" in manifest["modalities"]["photo"]["preprocessing"]
    assert json.loads((out / "processors.json").read_text()) == json.loads((run / "processors.json").read_text())
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims["title.ids"] == ["batch", "title_length"]  # dynamic batch and sequence axes in the graph itself


def test_exported_model_takes_any_batch_size_and_length(runs: dict[str, Path], data_dir: Path, run_root: Path,
                                                        records: pd.DataFrame) -> None:
    run = trained(runs, data_dir, run_root, "concat")
    out = export_run(run, "onnx", out=run_root / "sizes").out_dir
    reference = Predictor.load(run)
    for batch_size in (1, 7):
        predictor = OnnxPredictor(out, batch_size=batch_size)
        reference.batch_size = batch_size
        got = predictor.outputs(records.head(9), data_dir)["logits"]
        assert np.abs(got - reference.outputs(records.head(9), data_dir).logits.numpy()).max() < TOL


def test_cli_export_and_clear_errors(runs: dict[str, Path], data_dir: Path, run_root: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    run = trained(runs, data_dir, run_root, "concat")
    assert main(["export", str(run), "--out", str(tmp_path / "ts"), "--format", "torchscript"]) == 0
    assert "model.pt" in capsys.readouterr().out and (tmp_path / "ts" / "export.json").is_file()
    assert main(["export", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "empty" in err and "not a run directory" in err and "model.safetensors" in err
    assert main(["export", str(run), "--format", "tflite"]) == 2
    assert "unknown export format 'tflite'" in capsys.readouterr().err
    assert main(["export", str(run), "--opset", "99"]) == 2
    assert "opset 99 is not supported" in capsys.readouterr().err


def _unexportable(self: TabularMLP, inputs: dict[str, torch.Tensor]):  # type: ignore[no-untyped-def]
    out = TabularMLP.__dict__["_original_forward"](self, inputs)
    out.pooled = torch.special.bessel_j0(out.pooled)  # (B, D) no ONNX equivalent
    return out


def test_unsupported_part_is_named_and_fallback_writes_torchscript(runs: dict[str, Path], data_dir: Path,
                                                                   run_root: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    run = trained(runs, data_dir, run_root, "concat")
    monkeypatch.setattr(TabularMLP, "_original_forward", TabularMLP.forward, raising=False)
    monkeypatch.setattr(TabularMLP, "forward", _unexportable)
    with pytest.raises(ExportError, match=r"encoder 'specs' \(TabularMLP\)"):
        export_run(run, "onnx", out=tmp_path / "fails", exporter="legacy")
    result = export_run(run, "onnx", out=tmp_path / "fallback", exporter="legacy", fallback=True)
    assert result.format == "torchscript" and result.model_file.is_file()
    assert "ONNX export failed" in result.note and not (tmp_path / "fallback" / "model.onnx").exists()
    assert json.loads((tmp_path / "fallback" / "export.json").read_text())["format"] == "torchscript"


def test_export_time_stand_ins_compute_the_same_values_on_a_copy() -> None:
    import torch.nn.functional as F
    from torch import nn

    from polymodal.encoders.cnn import window_any
    from polymodal.encoders.recurrent import BiGRU
    from polymodal.export.graph import exportable

    torch.manual_seed(0)
    for t in range(4, 30):  # AudioCNN's token mask: same as the max-pool it replaced
        mask = torch.rand(3, t) > 0.5
        n = t // 4
        assert torch.equal(window_any(mask, 4, n), F.max_pool1d(mask[:, None].float(), 4, 4)[:, 0, :n] > 0)
    gru, attn = BiGRU(5, 8, layers=2, dropout=0.0).eval(), nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x, mask = torch.randn(4, 6, 5), torch.arange(6)[None] < torch.tensor([6, 3, 1, 0])[:, None]  # (B, T)
    q, kv, real = torch.randn(4, 3, 8), torch.randn(4, 6, 8), torch.arange(6)[None] < torch.tensor([6, 3, 1, 2])[:, None]
    with torch.no_grad():
        want = gru(x, mask), attn(q, kv, kv, key_padding_mask=~real, need_weights=False)[0]
        with exportable(nn.ModuleDict({"gru": gru, "attn": attn})) as friendly:
            got = friendly["gru"](x, mask), friendly["attn"](q, kv, kv, key_padding_mask=~real, need_weights=False)[0]
            # the library classes and the original modules stay as they are (a server may share the process)
            assert BiGRU.forward.__name__ == "forward" and nn.MultiheadAttention.forward.__name__ == "forward"
            assert "forward" not in vars(gru) and "forward" not in vars(attn)
            assert friendly["attn"].forward.__name__ == "plain_attention"
    for g, w in zip(got, want):
        assert torch.allclose(g, w, atol=1e-6, equal_nan=True)


@pytest.mark.slow
def test_dynamo_exporter_matches_pytorch(data_dir: Path, tmp_path: Path, records: pd.DataFrame) -> None:
    """The torch.export-based exporter (the one `auto` falls back to) on a GRU text encoder + Transformer fusion."""
    run = tmp_path / "run"
    train(parse_config(make_config(data_dir, run, ["photo", "title"], fusion="transformer", epochs=1)))
    result = export_run(run, "onnx", out=tmp_path / "dynamo", exporter="dynamo")
    assert result.exporter == "dynamo"
    predictor, reference = OnnxPredictor(result.out_dir), Predictor.load(run)
    for drop in (frozenset(), frozenset({"photo"})):
        got = predictor.outputs(records, data_dir, drop)["logits"]
        assert np.abs(got - reference.outputs(records, data_dir, drop).logits.numpy()).max() < TOL
