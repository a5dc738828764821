"""Feature cache: frozen encoders' outputs stored once, reused, invalidated by any change, same training."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from polymodal.factory import build_model, parse_config
from polymodal.features.cache import FeatureCache, cached_modalities, use_feature_cache
from polymodal.training.fit import prepare, train


def cache_config(data_dir: Path, out: Path, cache: bool = True, width: int = 8, size: int = 12,
                 fusion: str = "concat") -> dict[str, Any]:
    return {
        "name": out.name,
        "data": {"source": str(data_dir / "data.parquet"), "split": {"ratios": [0.6, 0.2, 0.2], "seed": 0}},
        "modalities": {
            "title": {"type": "text", "train": {"mode": "frozen", "cache": cache},
                      "encoder": {"name": "text_transformer", "out_dim": 16, "layers": 1, "heads": 2}},
            "photo": {"type": "image", "size": size, "channels": 1, "augment": False, "mean": [0.5], "std": [0.25],
                      "train": {"mode": "frozen", "cache": cache},
                      "encoder": {"name": "image_cnn", "width": width, "out_dim": 16, "blocks": 2}},
            "specs": {"type": "tabular", "numeric": ["price"], "categorical": ["brand"],
                      "encoder": {"name": "tabular_mlp", "out_dim": 16, "hidden": 16}},
        },
        "target": {"field": "label", "task": "multiclass"},
        "fusion": {"name": fusion, "hidden": 16},
        "training": {"epochs": 2, "batch_size": 16, "progress_bar": False, "lr": 3e-3, "patience": None},
        "output_dir": str(out),
    }


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("POLYMODAL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def lookup(config: dict[str, Any], cache: FeatureCache) -> dict[str, Any]:
    """Build the run's pipeline and model as `train` does and pass its datasets through the cache."""
    from polymodal.training.loop import seed_everything

    cfg = parse_config(config)
    seed_everything(cfg.training.seed)
    prep = prepare(cfg)
    model = build_model(cfg, prep.processors, prep.task.num_outputs)
    return use_feature_cache(cfg, model.encoders, prep.processors, prep.datasets, cache)


def entries(root: Path) -> set[str]:
    return {p.name for p in (root / "features").iterdir() if not p.name.startswith(".")}


def test_only_frozen_for_the_whole_run_is_cached(data_dir: Path, tmp_path: Path) -> None:
    raw = cache_config(data_dir, tmp_path / "run")
    assert cached_modalities(parse_config(raw)) == ["title", "photo"]
    raw["modalities"]["photo"]["train"] = {"mode": "frozen", "unfreeze_after": 1}
    raw["modalities"]["title"]["train"] = {"mode": "frozen", "cache": False}
    assert cached_modalities(parse_config(raw)) == []


def test_hit_on_second_run_and_batches_carry_features(data_dir: Path, tmp_path: Path, _cache_dir: Path) -> None:
    raw = cache_config(data_dir, tmp_path / "run")
    first = FeatureCache()
    datasets = lookup(raw, first)
    assert (first.hits, first.misses) == (0, 6)  # 2 modalities x 3 splits
    stored = entries(_cache_dir)
    second = FeatureCache()
    again = lookup(raw, second)
    assert (second.hits, second.misses) == (6, 0) and entries(_cache_dir) == stored
    batch = again["train"].__getitems__([0, 1, 2])
    assert set(batch.features["photo"]) == {"pooled", "tokens", "mask"} and batch.features["photo"]["pooled"].shape == (3, 16)
    assert set(batch.features["title"]) == {"pooled", "tokens", "mask"} and "numeric" in batch.inputs["specs"]
    assert "photo" not in batch.inputs and "specs" not in batch.features  # cached outputs have their own field
    assert torch.equal(batch.features["photo"]["pooled"],
                       datasets["train"].__getitems__([0, 1, 2]).features["photo"]["pooled"])


def test_invalidated_by_encoder_options_processor_config_and_data(data_dir: Path, tmp_path: Path,
                                                                  _cache_dir: Path) -> None:
    lookup(cache_config(data_dir, tmp_path / "run"), FeatureCache())
    changes = {
        "encoder option": cache_config(data_dir, tmp_path / "run", width=4),
        "processor config": cache_config(data_dir, tmp_path / "run", size=16),
    }
    for what, raw in changes.items():
        cache = FeatureCache()
        lookup(raw, cache)
        assert cache.misses == 3 and cache.hits == 3, what  # photo recomputed for every split, title reused
        # (title's encoder is built first, so its random init does not depend on photo's options)
    seed = cache_config(data_dir, tmp_path / "run")
    seed["training"]["seed"] = 1  # another random init of the frozen encoders: other weights
    cache = FeatureCache()
    lookup(seed, cache)
    assert cache.misses == 6, "encoder weights"
    from PIL import Image

    changed = tmp_path / "changed"
    shutil.copytree(data_dir, changed)
    Image.fromarray(np.full((12, 12), 255, dtype=np.uint8)).save(changed / "img" / "0.png")  # one record's image
    cache = FeatureCache()
    lookup(cache_config(changed, tmp_path / "run"), cache)
    assert (cache.misses, cache.hits) == (1, 5), "data content"  # only photo, only the split holding record 0


@pytest.mark.parametrize("fusion", ["cross_attention"])  # reads tokens and their masks, not only pooled features
def test_training_with_and_without_cache_agrees(data_dir: Path, tmp_path: Path, fusion: str) -> None:
    cached, plain = (cache_config(data_dir, tmp_path / name, cache=name == "cached", fusion=fusion)
                     for name in ("cached", "plain"))
    for raw in (cached, plain):
        raw["training"]["epochs"] = 1
    with_cache, without = train(parse_config(cached)), train(parse_config(plain))
    assert with_cache.metrics.keys() == without.metrics.keys()
    for split, values in with_cache.metrics.items():
        for name, value in values.items():
            assert value == pytest.approx(without.metrics[split][name], abs=1e-4), (split, name)
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "cached" / "model.safetensors"), load_file(tmp_path / "plain" / "model.safetensors")
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), atol=1e-4, err_msg=key)


def _count_image_forwards(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> None:
    from polymodal.encoders.cnn import ImageCNN

    forward = ImageCNN.forward
    monkeypatch.setattr(ImageCNN, "forward", lambda self, x: (calls.append("image"), forward(self, x))[1])


def test_evaluation_after_training_reuses_cached_features(data_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import polymodal.training.fit as fit

    calls: list[str] = []
    _count_image_forwards(monkeypatch, calls)
    evaluate = fit.evaluate_splits
    monkeypatch.setattr(fit, "evaluate_splits", lambda *a: (calls.append("evaluate"), evaluate(*a))[1])
    result = train(parse_config(cache_config(data_dir, tmp_path / "run")), report=False)
    assert "image" in calls and "image" not in calls[calls.index("evaluate"):]  # frozen encoder: no second pass
    assert set(result.metrics) == {"train", "val", "test"} and not (tmp_path / "run" / "report.html").exists()


def test_report_reuses_cached_features(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import polymodal.evaluation.report as report

    train(parse_config(cache_config(data_dir, tmp_path / "run")), report=False)
    calls: list[str] = []
    _count_image_forwards(monkeypatch, calls)
    monkeypatch.setattr(report, "cost_section", lambda run, dataset: None)  # the cost section times the encoder
    report.write_report(tmp_path / "run")
    assert calls == [] and "Metrics" in (tmp_path / "run" / "report.md").read_text()


def test_predictor_evaluate_reads_cached_features_with_the_same_metrics(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import polymodal.predictor as predictor_module
    from polymodal.predictor import Predictor

    result = train(parse_config(cache_config(data_dir, tmp_path / "run")), report=False)
    predictor = Predictor.load(tmp_path / "run")
    records = pd_split(data_dir, result.run_dir, "test")
    calls: list[str] = []
    _count_image_forwards(monkeypatch, calls)
    cached = predictor.evaluate(records, root=data_dir)
    assert calls == []  # the frozen image encoder did not run
    monkeypatch.setattr(predictor_module, "frozen_features", lambda config, model, processors, dataset: dataset)
    plain = predictor.evaluate(records, root=data_dir)
    assert "image" in calls
    assert cached.keys() == plain.keys() == result.metrics["test"].keys()
    for name, value in cached.items():
        assert value == pytest.approx(plain[name], abs=1e-5) and value == pytest.approx(result.metrics["test"][name],
                                                                                          abs=1e-5), name


def pd_split(data_dir: Path, run_dir: Path, split: str) -> Any:
    """The records of one split of the run's data (as the run split them)."""
    from polymodal.data.sources import load_splits
    from polymodal.data.splits import ensure_val, label_field
    from polymodal.factory import load_config

    config = load_config(run_dir / "config.yaml")
    return ensure_val(load_splits(config.data, label_field(config)), config)[split].frame


def test_robustness_runs_only_the_corrupted_modalitys_encoder_with_the_same_scores(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import polymodal.evaluation.robustness as robustness
    from polymodal.data.sources import Table
    from polymodal.rundir import load_run

    result = train(parse_config(cache_config(data_dir, tmp_path / "run")), report=False)
    run = load_run(result.run_dir)
    table = Table(pd_split(data_dir, result.run_dir, "test"), data_dir, "test")
    only_text = {"title": ["typos"], "photo": [], "specs": []}
    calls: list[str] = []
    _count_image_forwards(monkeypatch, calls)
    cached = robustness.evaluate_robustness(run, table, severities=[0, 3], rates=[0.0, 0.5], corruptions=only_text)
    assert calls == []  # clean, missing and text-corrupted records: the frozen image encoder's outputs are stored
    monkeypatch.setattr(robustness, "frozen_features", lambda config, model, processors, dataset: dataset)
    monkeypatch.setattr(robustness, "carry_features", lambda clean, altered, skip: altered)
    plain = robustness.evaluate_robustness(run, table, severities=[0, 3], rates=[0.0, 0.5], corruptions=only_text)
    assert "image" in calls and len(cached) == len(plain) > 5
    np.testing.assert_allclose(cached["score"].to_numpy(), plain["score"].to_numpy(), atol=1e-5)


def test_shifted_modality_runs_only_the_shifted_modalitys_encoder_with_the_same_scores(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import polymodal.evaluation.shifted as shifted
    from polymodal.data.sources import Table
    from polymodal.evaluation.corruptions import CORRUPTIONS
    from polymodal.rundir import load_run

    result = train(parse_config(cache_config(data_dir, tmp_path / "run")), report=False)
    run = load_run(result.run_dir)
    table = Table(pd_split(data_dir, result.run_dir, "test"), data_dir, "test")
    monkeypatch.setattr(shifted, "CORRUPTIONS", {"text": {"typos": CORRUPTIONS["text"]["typos"]}})
    held_out = {"again": (table, "title")}
    calls: list[str] = []
    _count_image_forwards(monkeypatch, calls)
    cached = shifted.shifted_modality(run, table, severities=[3], held_out=held_out)
    assert calls == []  # clean, text-corrupted and held-out records: the frozen image encoder's outputs are stored
    monkeypatch.setattr(shifted, "frozen_features", lambda config, model, processors, dataset: dataset)
    monkeypatch.setattr(shifted, "carry_features", lambda clean, altered, skip: altered)
    plain = shifted.shifted_modality(run, table, severities=[3], held_out=held_out)
    assert "image" in calls and len(cached) == len(plain) == 2
    np.testing.assert_allclose(cached[["score", "unaffected", "auroc"]].to_numpy(dtype=float),
                               plain[["score", "unaffected", "auroc"]].to_numpy(dtype=float), atol=1e-5)


def test_ensemble_evaluate_reads_its_polymodal_members_cached_features(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import polymodal.predictor as predictor_module
    from polymodal.apps.candidates import tfidf_linear
    from polymodal.data.sources import load_splits
    from polymodal.data.splits import ensure_val, label_field
    from polymodal.ensemble.rundir import Member, save_ensemble
    from polymodal.predictor import Predictor
    from polymodal.rundir import load_run, write_manifest

    result = train(parse_config(cache_config(data_dir, tmp_path / "run")), report=False)
    run = load_run(result.run_dir)
    tables = ensure_val(load_splits(run.config.data, label_field(run.config)), run.config)
    words = tfidf_linear("words", run.config, ["title"], tables,
                         lambda logits, target: run.task.metrics(logits, target)["accuracy"], [10.0])
    members = [Member("net", run.config, run.processors, run.model), words.member]
    save_ensemble(tmp_path / "best", "best", members, {"net": 0.5, "words": 0.5}, run.task)
    write_manifest(tmp_path / "best")
    predictor = Predictor.load(tmp_path / "best")
    calls: list[str] = []
    _count_image_forwards(monkeypatch, calls)
    cached = predictor.evaluate(tables["test"].frame, root=data_dir)
    assert calls == []  # the member's frozen image encoder did not run: its stored outputs were read
    monkeypatch.setattr(predictor_module, "frozen_features", lambda config, model, processors, dataset: dataset)
    plain = predictor.evaluate(tables["test"].frame, root=data_dir)
    assert "image" in calls
    for name, value in cached.items():
        assert value == pytest.approx(plain[name], abs=1e-5), name
