"""Sentiment: the `sentiment` task's metrics by hand, the shipped data and its materialized table, training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from polymodal.config import TargetConfig
from polymodal.datasets.sentiment import load_source, materialize_sentiment
from polymodal.factory import load_config, parse_config
from polymodal.tasks import Sentiment, build_task, sentiment_metrics
from polymodal.training.fit import train


def test_sentiment_metrics_by_hand() -> None:
    pred = torch.tensor([2.4, -0.2, 0.3, -2.6, 1.5, 0.0])
    true = torch.tensor([2.0, 1.0, 0.0, -3.0, -0.5, -1.0])
    m = sentiment_metrics(pred, true)
    # non-zero convention: record 2 (true 0) is left out; signs right for records 0, 3, 5 -> 3 of 5
    assert m["acc2"] == pytest.approx(3 / 5)
    # negative vs non-negative over all 6: right for 0, 2, 3 -> 3 of 6
    assert m["acc2_has0"] == pytest.approx(3 / 6)
    # rounded and clipped: pred 2, -0, 0, -3, 2, 0 vs true 2, 1, 0, -3, -0 (-0.5 rounds to even), -1
    assert m["acc7"] == pytest.approx(3 / 6)
    assert m["mae"] == pytest.approx(float((pred - true).abs().mean()))
    assert m["pearson"] == pytest.approx(float(np.corrcoef(pred.numpy(), true.numpy())[0, 1]), abs=1e-5)
    # weighted F1 over the non-zero records: class "positive" (true 0, 1) and "negative" (true 3, 4, 5)
    # predictions positive for 0, 4; so positive: tp 1, fp 1, fn 1 -> F1 0.5; negative: tp 2, fp 1, fn 1
    f1_pos, f1_neg = 0.5, 2 * 2 / (2 * 2 + 1 + 1)
    assert m["f1"] == pytest.approx((2 * f1_pos + 3 * f1_neg) / 5, abs=1e-6)


def test_sentiment_task_reports_in_score_units() -> None:
    task = build_task(TargetConfig(field="score", task="sentiment"))
    assert isinstance(task, Sentiment) and task.monitor == "mae" and task.mode == "min"
    task.fit([-3.0, -1.0, 1.0, 3.0])
    target = torch.from_numpy(np.stack([task.encode(v) for v in (-2.0, 2.0)]))
    m = task.metrics(target.clone(), target)
    assert m["mae"] == pytest.approx(0.0, abs=1e-6) and m["acc2"] == 1.0 and m["acc7"] == 1.0
    with pytest.raises(Exception, match="one score column"):
        build_task(TargetConfig(field=["a", "b"], task="sentiment")).fit([[1, 2]])


def test_shipped_source() -> None:
    src = load_source()
    n = len(src["text"])
    assert n == 1000 and len(src["offsets"]) == n + 1 and src["opus"].nbytes < 3_200_000
    assert np.abs(src["score"]).max() <= 3.0 and src["sarcastic"].sum() >= 100
    flipped = src["sarcastic"]
    assert (src["text_score"][flipped] > 0).all() and (src["score"][flipped] < 0).all()
    assert np.array_equal(src["score"][~flipped], src["text_score"][~flipped])


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = materialize_sentiment(tmp_path_factory.mktemp("sentiment") / "s")
    return root, pd.read_csv(root / "records.csv")


def test_materialized_table(records: tuple[Path, pd.DataFrame]) -> None:
    root, frame = records
    assert list(frame.columns) == ["id", "text", "audio", "score", "text_score", "delivery", "flipped", "speaker",
                                   "split"]
    speakers = frame.groupby("split")["speaker"].apply(set)
    assert not (speakers["train"] & speakers["test"]) and not (speakers["val"] & speakers["test"])
    assert frame.groupby("split")["flipped"].sum().min() > 0  # every split has delivery-flipped records
    wave, rate = sf.read(root / frame["audio"][0])
    assert rate == 8000 and 0.5 < len(wave) / rate < 5.0


def test_builtin_config_validates() -> None:
    config = load_config(Path(__file__).parents[1] / "configs" / "sentiment.yaml")
    assert config.data.builtin == "sentiment" and config.target.task == "sentiment"


def test_text_and_audio_training_on_a_subset(records: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    root, frame = records
    subset = pd.concat([frame[frame["split"] == s].head(n) for s, n in (("train", 48), ("val", 16), ("test", 16))])
    subset.assign(audio=[str(root / a) for a in subset["audio"]]).to_csv(tmp_path / "records.csv", index=False)
    config = parse_config({
        "data": {"source": str(tmp_path / "records.csv"), "split": {"column": "split"}, "allow_outside_root": True},
        "modalities": {"text": {"type": "text", "vocab_size": 64, "encoder": {"name": "text_gru", "out_dim": 8}},
                       "audio": {"type": "audio", "sample_rate": 8000, "n_mels": 16, "max_seconds": 3.0,
                                 "encoder": {"name": "audio_cnn", "width": 4, "blocks": 2, "out_dim": 8}}},
        "target": {"field": "score", "task": "sentiment"},
        "training": {"epochs": 1, "batch_size": 16, "progress_bar": False},
        "output_dir": str(tmp_path / "run"),
    })
    result = train(config)
    assert {"acc2", "f1", "acc2_has0", "f1_has0", "acc7", "mae", "pearson", "rmse"} <= set(result.metrics["test"])
