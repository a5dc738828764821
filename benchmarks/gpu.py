"""Training throughput and peak GPU memory, fp32 against bf16-mixed, for a mid-sized multimodal model.

Generated data (written once to a temporary folder): 64x64 RGB images, 32-token texts and (128, 32) feature
sequences, 10 classes. Model: image_cnn (width 64, 4 blocks) + text_transformer and sequence_transformer
(256 wide, 4 layers, 8 heads) + transformer fusion. The same decoded data trains once per precision through
polymodal's own training module and loop; throughput counts samples per second over the steps
after a warm-up, peak memory is torch.cuda.max_memory_allocated over the fit.

    python benchmarks/gpu.py                       # on a machine with a CUDA GPU; about 1-2 minutes on an H100
    python benchmarks/gpu.py --smoke               # tiny sizes; runs on the CPU too (checks the script only)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from polymodal.training.loop import Callback, Loop, seed_everything

WORDS = [f"w{i}" for i in range(400)]


def write_data(root: Path, n: int, seq_len: int, image_size: int, seed: int = 0) -> None:
    """n records (images and sequences as files, texts in the table) split into train and a 5% val table."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True)
    (root / "seq").mkdir()
    labels = rng.integers(0, 10, n)
    rows = []
    for i, y in enumerate(labels):
        img = rng.integers(0, 255, (image_size, image_size, 3), dtype=np.uint8)
        img[: image_size // 10 * (y + 1) // 2] //= 2
        Image.fromarray(img).save(root / "img" / f"{i}.png")
        np.save(root / "seq" / f"{i}.npy", (rng.normal(size=(seq_len, 32)) + y * 0.1).astype(np.float32))
        words = rng.choice(WORDS, 32)
        words[0] = f"w{y}"
        rows.append({"photo": f"img/{i}.png", "track": f"seq/{i}.npy", "title": " ".join(words), "label": int(y)})
    frame = pd.DataFrame(rows)
    cut = int(n * 0.95)
    frame.iloc[:cut].to_parquet(root / "train.parquet")
    frame.iloc[cut:].to_parquet(root / "val.parquet")


def make_config(root: Path, args: argparse.Namespace, gpu: bool) -> dict:
    wide = {"out_dim": args.width, "layers": 4, "heads": 8}
    return {
        "name": "gpu_bench",
        "data": {"train": str(root / "train.parquet"), "val": str(root / "val.parquet")},
        "modalities": {
            "photo": {"type": "image", "size": args.image_size, "encoder": {"name": "image_cnn", "width": 64,
                                                                            "blocks": 4, "out_dim": args.width}},
            "title": {"type": "text", "max_length": 32, "vocab_size": 512,
                      "encoder": {"name": "text_transformer", **wide}},
            "track": {"type": "sequence", "max_length": args.seq_len,
                      "encoder": {"name": "sequence_transformer", **wide}},
        },
        "target": {"field": "label", "task": "multiclass"},
        "fusion": {"name": "transformer"},
        "training": {"epochs": args.epochs, "batch_size": args.batch_size, "accelerator": "gpu" if gpu else "cpu",
                     "deterministic": False, "patience": None, "progress_bar": False, "num_workers": args.workers,
                     "imbalance": {"diagnostics": False}},
        "output_dir": str(root / "run"),
    }


class Meter(Callback):
    """Samples per second after `warmup` steps, and peak CUDA memory over the fit."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.step, self.samples, self.start = warmup, 0, 0, 0.0
        self.seconds, self.peak_mb = 0.0, float("nan")

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_start(self, loop: Loop, module: torch.nn.Module) -> None:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def on_train_batch_end(self, loop: Loop, module: torch.nn.Module, batch: Any, batch_idx: int) -> None:
        self.step += 1
        if self.step == self.warmup:
            self._sync()
            self.start = time.perf_counter()
        elif self.step > self.warmup:
            self.samples += batch.size

    def on_train_end(self, loop: Loop, module: torch.nn.Module) -> None:
        self._sync()
        self.seconds = time.perf_counter() - self.start
        if torch.cuda.is_available():
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20


def run(config_data: dict, prep, precision: str, warmup: int) -> tuple[Meter, int]:  # type: ignore[no-untyped-def]
    from polymodal.data.dataset import make_loader
    from polymodal.factory import build_model, parse_config
    from polymodal.model import count_parameters
    from polymodal.training import distributed
    from polymodal.training.module import PolymodalModule

    config_data = {**config_data, "training": {**config_data["training"], "precision": precision}}
    config = parse_config(config_data)
    cfg = config.training
    seed_everything(cfg.seed)
    model = build_model(config, prep.processors, prep.task.num_outputs)
    module = PolymodalModule(model, prep.task, prep.processors, cfg)
    meter = Meter(warmup)
    loop = Loop(module, cfg, distributed.start(cfg), Path(config.output_dir) / precision, f"val_{prep.task.monitor}",
                prep.task.mode, [meter])
    loop.fit(make_loader(prep.datasets["train"], cfg.batch_size, True, cfg.num_workers, cfg.seed),
             make_loader(prep.datasets["val"], cfg.batch_size, False, cfg.num_workers))
    return meter, count_parameters(model)


def main() -> None:
    parser = argparse.ArgumentParser(description="fp32 vs bf16-mixed training throughput and peak GPU memory")
    parser.add_argument("--records", type=int, default=16384)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; runs on the CPU when there is no GPU")
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    if not gpu and not args.smoke:
        sys.exit("benchmarks/gpu.py measures GPU training: torch.cuda.is_available() is False on this machine "
                 f"(torch {torch.__version__}). Run it on a machine with a CUDA GPU, or pass --smoke to check the "
                 "script on the CPU with tiny sizes.")
    if args.smoke:
        args.records, args.epochs, args.batch_size, args.width, args.seq_len, args.workers = 96, 1, 16, 32, 16, 0
    warmup = 2 if args.smoke else 10
    from polymodal.factory import parse_config
    from polymodal.training.fit import prepare

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_data(root, args.records, args.seq_len, args.image_size)
        config_data = make_config(root, args, gpu)
        prep = prepare(parse_config(config_data))
        print(f"data: {args.records} records written and decoded in {time.perf_counter() - t0:.1f} s", flush=True)
        rows = []
        for precision in ("32-true", "bf16-mixed"):
            meter, params = run(config_data, prep, precision, warmup)
            rows.append((precision, meter.samples / max(meter.seconds, 1e-9), meter.peak_mb))
            print(f"{precision}: {rows[-1][1]:.0f} samples/s, peak {rows[-1][2]:.0f} MB", flush=True)
    device = torch.cuda.get_device_name(0) if gpu else "CPU (smoke run: sizes too small to mean anything)"
    print(f"\ndevice: {device}; torch {torch.__version__}; model {params / 1e6:.1f} M parameters; batch "
          f"{args.batch_size}; {args.records} records x {args.epochs} epochs ({warmup} warm-up steps not timed)\n")
    print("| precision | samples/s | peak GPU memory (MB) | speed-up |")
    print("|---|---:|---:|---:|")
    for precision, rate, peak in rows:
        print(f"| {precision} | {rate:,.0f} | {peak:,.0f} | {rate / rows[0][1]:.2f}x |")


if __name__ == "__main__":
    main()
