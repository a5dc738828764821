"""Self-supervised pretraining (task retrieval + reconstruction, on records without labels), then fine-tuning."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import make_config
from safetensors.torch import load_file

from polymodal.config import ConfigError
from polymodal.factory import build_model, load_config, parse_config
from polymodal.predictor import Predictor
from polymodal.rundir import init_weights
from polymodal.training.fit import prepare, train

MODS = ["emb", "specs"]


@pytest.fixture(scope="module")
def pretrained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unlabeled")
    pd.read_parquet(data_dir / "data.parquet").drop(columns=["label", "score", "tags"]).to_parquet(
        root / "data.parquet")  # no label column anywhere: nothing can leak in
    cfg = make_config(root, root / "pre", MODS, task="retrieval", field=None, epochs=2)
    cfg["objectives"] = [{"name": "contrastive", "embed_dim": 8}, {"name": "reconstruction", "hidden": 16}]
    train(parse_config(cfg))
    return root / "pre"


def test_finetune_starts_from_the_pretrained_encoders_and_fusion(pretrained: Path, data_dir: Path,
                                                                  tmp_path: Path) -> None:
    cfg = parse_config(make_config(data_dir, tmp_path / "ft", MODS, epochs=2, init_from=str(pretrained)))
    prep = prepare(cfg)
    saved_state = json.loads((pretrained / "processors.json").read_text())["modalities"]
    assert {m: p.state() for m, p in prep.processors.items()} == saved_state  # fitted state reused, not refitted

    model = build_model(cfg, prep.processors, prep.task.num_outputs)
    loaded = init_weights(model, pretrained)
    saved, state = load_file(str(pretrained / "model.safetensors")), model.state_dict()
    encoder_keys = [k for k in state if k.startswith("encoders.")]
    assert encoder_keys and set(encoder_keys) <= set(loaded)
    assert any(k.startswith("fusion.") for k in loaded) and not any(k.startswith("head.") for k in loaded)
    for k in loaded:
        assert torch.equal(state[k], saved[k]), k

    result = train(cfg)
    assert {"accuracy", "macro_f1", "auroc"} <= set(result.metrics["test"])
    assert load_config(result.run_dir / "config.yaml").training.init_from == str(pretrained)
    frame = pd.read_parquet(data_dir / "data.parquet").head(3)
    assert len(Predictor.load(result.run_dir).predict(frame)) == 3


def test_init_from_needs_matching_modalities(pretrained: Path, data_dir: Path, tmp_path: Path) -> None:
    cfg = parse_config(make_config(data_dir, tmp_path / "ft", ["emb", "title"], init_from=str(pretrained)))
    with pytest.raises(ConfigError, match="training.init_from: modality 'title'"):
        prepare(cfg)
    cfg = parse_config(make_config(data_dir, tmp_path / "ft", MODS, init_from=str(tmp_path / "nowhere")))
    with pytest.raises(ConfigError, match="not a complete run directory"):
        prepare(cfg)
