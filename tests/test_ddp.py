"""Two CPU processes under DDP (gloo), launched in a subprocess so that starting the second rank (which runs the
program again) does not re-run pytest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from conftest import make_config
from safetensors.torch import load_file
from torch.utils.data import DataLoader, DistributedSampler

from polymodal.data.dataset import first, make_loader
from polymodal.factory import build_model, parse_config
from polymodal.training import fit
from polymodal.training.loop import seed_everything


def no_dropout_config(data_dir: Path, out: Path, **training: object) -> dict:
    """emb + specs without dropout (so two runs that see the same batches compute the same updates)."""
    cfg = make_config(data_dir, out, ["emb", "specs"], epochs=2, deterministic=False, scheduler="constant",
                      warmup_epochs=0, patience=None, imbalance={"diagnostics": False}, **training)
    for spec in cfg["modalities"].values():
        spec["encoder"] = {**spec["encoder"], "dropout": 0.0}
    cfg["fusion"]["dropout"] = 0.0
    return cfg


def same_order_loader(dataset, batch_size: int, shuffle: bool, num_workers: int = 0, seed: int = 0):  # type: ignore[no-untyped-def]
    """The training order the loop's DistributedSampler draws (randperm seeded with seed + epoch), one replica."""
    if not shuffle:
        return make_loader(dataset, batch_size, shuffle, num_workers, seed)
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=first)


@pytest.mark.slow
def test_ddp_two_processes_write_a_run_that_matches_a_single_process_fit(data_dir: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """2 processes x batch 16 against 1 process x batch 32, same seed, same records in the same order.

    Each epoch the loop's DistributedSampler shuffles with torch.randperm seeded by seed + epoch and gives
    rank r the positions r, r+2, ...; the single process here takes its order from the same sampler with one
    replica (its default loader draws another permutation, which would make agreement only statistical). Then
    the two ranks' batches together are exactly the single process's batches, and DDP's average of two
    equal-sized batch means is the mean over their union: the runs take the same steps on the same gradients.
    What remains is floating-point summation order (an all-reduce of two partial sums against one sum), about
    1e-6 relative per step: the tolerance (rtol 1e-4, atol 1e-5 on weights; 1e-3 relative on metrics) allows
    that; a missing gradient sync, a different effective batch or a lost record would exceed it.
    """
    cfg = no_dropout_config(data_dir, tmp_path / "ddp", batch_size=16, strategy="ddp", devices=2, accelerator="cpu")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    script = tmp_path / "launch.py"
    script.write_text(textwrap.dedent(f"""
        from polymodal.factory import load_config
        from polymodal.training.fit import train
        train(load_config({str(tmp_path / "cfg.yaml")!r}))
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp_metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert ddp_metrics["epochs"] == 2 and 0.0 <= ddp_metrics["test"]["accuracy"] <= 1.0

    monkeypatch.setattr(fit, "make_loader", same_order_loader)
    single = fit.train(parse_config(no_dropout_config(data_dir, tmp_path / "single", batch_size=32)))
    ddp_weights = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    single_weights = load_file(str(single.run_dir / "model.safetensors"))
    seed_everything(0)  # as train() does: the weights both runs started from
    init = build_model(parse_config(cfg), fit.prepare(parse_config(cfg)).processors, 3).state_dict()
    assert all(not torch.allclose(init[k], single_weights[k]) for k in init if k.endswith("weight"))  # trained
    for key, value in single_weights.items():
        torch.testing.assert_close(ddp_weights[key], value, rtol=1e-4, atol=1e-5)
    for split in ("val", "test"):
        for name, value in single.metrics[split].items():
            assert ddp_metrics[split][name] == pytest.approx(value, rel=1e-3, abs=1e-4), (split, name)
