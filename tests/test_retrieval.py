"""Retrieval: recall@k and median rank on a constructed case, an end-to-end run, embed(modality=...) and retrieve()."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_config

from polymodal.config import ConfigError, TargetConfig
from polymodal.factory import parse_config
from polymodal.predictor import Predictor
from polymodal.tasks import build_task, retrieval_metrics, retrieval_ranks
from polymodal.training.fit import train

RANKS = [1, 1, 2, 3, 5, 6, 10, 11, 12, 1, 4, 7]


def similarity_with_ranks(ranks: list[int]) -> torch.Tensor:
    """Query i scores its match 0, (rank - 1) other candidates 1 and the rest -1."""
    n = len(ranks)
    sim = -torch.ones(n, n)
    for i, r in enumerate(ranks):
        sim[i, i] = 0.0
        others = [j for j in range(n) if j != i][: r - 1]
        sim[i, others] = 1.0
    return sim


def test_recall_at_k_and_median_rank_on_known_ranks() -> None:
    sim = similarity_with_ranks(RANKS)
    assert retrieval_ranks(sim).tolist() == RANKS
    m = retrieval_metrics(sim, "a_to_b")
    assert m["a_to_b_r1"] == pytest.approx(3 / 12)
    assert m["a_to_b_r5"] == pytest.approx(7 / 12)
    assert m["a_to_b_r10"] == pytest.approx(10 / 12)
    assert m["a_to_b_median_rank"] == 4  # sorted ranks ... 4, 5 ... in the middle: 4.5 rounded down (open_clip)


def test_retrieval_task_metrics_both_directions_skip_missing_rows() -> None:
    task = build_task(TargetConfig(task="retrieval"))
    z = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    b = z.clone()
    b[0] = float("nan")  # record 0 lacks b: evaluated on records 1..5 only
    m = task.metrics(torch.zeros(6, 0), None, {"a": z, "b": b})
    assert set(m) == {f"{d}_{s}" for d in ("a_to_b", "b_to_a") for s in ("r1", "r5", "r10", "median_rank")} | {
        "mean_recall"}
    assert m["a_to_b_r1"] == m["b_to_a_r1"] == m["mean_recall"] == pytest.approx(1.0)
    assert m["a_to_b_median_rank"] == 1.0
    assert task.monitor == "mean_recall" and task.mode == "max"


def test_retrieval_config_adds_contrastive_and_checks_the_target() -> None:
    base = {"data": {"source": "x.csv"}, "modalities": {"a": {"type": "vector"}, "b": {"type": "vector"}}}
    cfg = parse_config({**base, "target": {"task": "retrieval"}})
    assert [o.name for o in cfg.objectives] == ["contrastive"]
    cfg = parse_config({**base, "target": {"task": "retrieval"}, "objectives": [{"name": "contrastive", "embed_dim": 8}]})
    assert len(cfg.objectives) == 1 and cfg.objectives[0].options == {"embed_dim": 8}
    with pytest.raises(ConfigError, match="target.field"):
        parse_config({**base, "target": {"task": "retrieval", "field": "label"}})
    with pytest.raises(ConfigError, match="target.field: task multiclass needs"):
        parse_config({**base, "target": {"task": "multiclass"}})
    with pytest.raises(ConfigError, match="at least two modalities"):
        parse_config({**base, "modalities": {"a": {"type": "vector"}}, "target": {"task": "retrieval"}})


@pytest.fixture(scope="module")
def retrieval_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "retrieval"
    cfg = make_config(data_dir, out, ["emb", "title"], task="retrieval", field=None, epochs=3)
    cfg["objectives"] = [{"name": "contrastive", "embed_dim": 8}]
    train(parse_config(cfg))
    return out


def test_retrieval_run_reports_recall_in_both_directions(retrieval_run: Path) -> None:
    metrics = json.loads((retrieval_run / "metrics.json").read_text())
    for split in ("train", "val", "test"):
        for key in ("emb_to_title_r1", "emb_to_title_r10", "title_to_emb_r5", "title_to_emb_median_rank",
                    "mean_recall"):
            assert key in metrics[split], (split, key)
        assert 0.0 <= metrics[split]["mean_recall"] <= 1.0
    log = pd.read_csv(retrieval_run / "logs" / "metrics.csv")
    assert {"val_mean_recall", "train_contrastive", "val_contrastive"} <= set(log.columns)
    assert (retrieval_run / "report.md").is_file()


def test_embed_by_modality_and_retrieve(retrieval_run: Path, data_dir: Path) -> None:
    predictor = Predictor.load(retrieval_run)
    frame = pd.read_parquet(data_dir / "data.parquet").head(8)
    emb = predictor.embed(frame, root=data_dir, modality="emb")
    assert emb.shape == (8, 8) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert predictor.embed(frame, root=data_dir).shape == (8, 16)  # fused, as for any run
    titles = frame[["title"]].copy()  # a query table needs only its own modality's column
    titles.loc[2, "title"] = ""
    title_emb = predictor.embed(titles, modality="title")
    assert title_emb.shape == (8, 8) and np.isnan(title_emb[2]).all() and not np.isnan(title_emb[[0, 1, 3]]).any()

    hits = predictor.retrieve(frame.iloc[[5]], frame, "emb", "emb", k=3)
    assert hits["rank"].tolist() == [1, 2, 3] and hits["query"].tolist() == [0, 0, 0]
    assert hits["candidate"].iloc[0] == 5 and hits["score"].iloc[0] == pytest.approx(1.0, abs=1e-5)
    cross = predictor.retrieve(titles, frame, "title", "emb", k=4)
    assert len(cross) == 7 * 4 and 2 not in set(cross["query"])  # the query without a title gets no rows
    assert (cross.groupby("query")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()
    assert set(predictor.evaluate(data_dir / "data.parquet")) >= {"mean_recall", "emb_to_title_r1"}
    with pytest.raises(ValueError, match="predicts no labels"):
        predictor.predict(frame)
    with pytest.raises(KeyError, match="unknown modality 'photo'"):
        predictor.embed(frame, modality="photo")


def test_embed_by_modality_needs_a_contrastive_objective(data_dir: Path, tmp_path: Path) -> None:
    train(parse_config(make_config(data_dir, tmp_path / "run", ["emb", "specs"], epochs=1)))
    with pytest.raises(ValueError, match="contrastive objective"):
        Predictor.load(tmp_path / "run").embed(pd.read_parquet(data_dir / "data.parquet").head(2), modality="emb")
