"""The run report: Markdown and self-contained HTML, rendered in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import make_config

from polymodal.cli import main
from polymodal.evaluation.report import bootstrap_ci, markdown_table
from polymodal.factory import parse_config
from polymodal.tasks import build_task
from polymodal.training.fit import train


@pytest.fixture(scope="module")
def run_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    train(parse_config(make_config(data_dir, out, ["emb", "specs", "title"], epochs=2)))
    return out


def test_training_writes_both_reports(run_dir: Path) -> None:
    md = (run_dir / "report.md").read_text()
    for title in ("## Metrics", "## Training", "## Confusion matrix", "## Unimodal scores and missing patterns",
                  "## Modality contributions", "## Cost"):
        assert title in md, title
    for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", md):
        assert (run_dir / image).is_file(), image
    html = (run_dir / "report.html").read_text()
    assert html.count("<section>") == md.count("\n## ") and "data:image/png;base64," in html
    assert "src='http" not in html and 'src="http' not in html  # self-contained


def test_report_command_with_robustness(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(run_dir), "--robustness"]) == 0
    assert "## Robustness" in (run_dir / "report.md").read_text()
    assert (run_dir / "robustness.csv").is_file()


def test_bootstrap_interval_contains_the_point_and_narrows_with_data() -> None:
    task = build_task(parse_config({"data": {"source": "x.csv"}, "modalities": {"a": {"type": "vector"}},
                                    "target": {"field": "y", "task": "multiclass"}}).target)
    task.fit(["0", "1"])
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 2, (400,), generator=g)
    logits = torch.nn.functional.one_hot(torch.where(torch.rand(400, generator=g) < 0.8, target, 1 - target), 2)
    wide = bootstrap_ci(task, logits[:40].float(), target[:40]).set_index("metric").loc["accuracy"]
    narrow = bootstrap_ci(task, logits.float(), target).set_index("metric").loc["accuracy"]
    assert narrow.ci_low <= narrow.value <= narrow.ci_high
    assert (narrow.ci_high - narrow.ci_low) < (wide.ci_high - wide.ci_low)


def test_markdown_table() -> None:
    assert markdown_table(pd.DataFrame({"a": [1.23456, 2.0], "b": ["x", "y"]})) == \
        "| a | b |\n|---|---|\n| 1.235 | x |\n| 2 | y |"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_html_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    html = run_dir / "report.html"
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path}",
           "--virtual-time-budget=5000", "--dump-dom", html.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    images = re.search(r'data-images="(\d+)/(\d+)"', dom)
    sections = re.search(r'data-sections="(\d+)"', dom)
    assert images and sections, dom[:500]
    loaded, total = map(int, images.groups())
    assert total >= 4 and loaded == total  # every embedded plot decoded
    assert int(sections.group(1)) == html.read_text().count("<section>")


def test_predictor_explain_adds_up(run_dir: Path, data_dir: Path) -> None:
    from polymodal.predictor import Predictor

    predictor = Predictor.load(run_dir)
    frame = pd.read_parquet(data_dir / "data.parquet").head(5)
    explained = predictor.explain(frame)
    shap = explained[[c for c in explained.columns if c.startswith("shapley_")]].sum(axis=1)
    assert ((shap - (explained["value_full"] - explained["value_empty"])).abs() < 1e-5).all()
    assert explained["prediction"].tolist() == list(predictor.predict(frame))
