"""Two CPU processes under DDP (gloo), launched in a subprocess so Lightning's re-launch does not re-run pytest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml
from conftest import make_config


def test_ddp_two_processes_train_and_write_a_run(data_dir: Path, tmp_path: Path) -> None:
    cfg = make_config(data_dir, tmp_path / "run", ["emb", "specs"], epochs=2, strategy="ddp", devices=2,
                      accelerator="cpu", deterministic=False)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    script = tmp_path / "launch.py"
    script.write_text(textwrap.dedent(f"""
        from polymodal.config import load_config
        from polymodal.training.fit import train
        train(load_config({str(tmp_path / "cfg.yaml")!r}))
    """))
    env = {**os.environ, "PL_DISABLE_FORK": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert (tmp_path / "run" / "model.safetensors").is_file()
