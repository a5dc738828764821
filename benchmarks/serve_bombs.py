"""Peak memory and replies of `polymodal serve` under hostile requests (decompression bombs and malformed JSON).

    OMP_NUM_THREADS=1 python benchmarks/serve_bombs.py [--label after] [--src SRC_DIR]

Trains a tiny image (RGB, 32 px) + audio (16 kHz) run on 30 synthetic records, starts a real server
(`python -m polymodal.cli serve`, a child process) and sends, one after another: a 12000x12000 PNG (~140 KB),
8 of them at once, a one-hour FLAC, a WAV declaring 999983 Hz, 20 PNG bombs in one request, a float WAV of
1e30 samples, JSON nested 5,000 deep, a lone-surrogate field name and a 100,000-digit integer. After each step it
reads the server's peak resident memory (VmHWM) and current memory (VmRSS) from /proc. `--src` puts another
source tree first on the server's PYTHONPATH (how the "before" column was measured on main's code).
Appends a section to benchmarks/results/serve_bombs.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from server_process import free_port, start_server, stop_server  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "serve_bombs.md"


def make_run(root: Path) -> Path:
    from polymodal.config import parse_config
    from polymodal.training.fit import train

    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(root / f"{i}.png")
        sf.write(root / f"{i}.wav", (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
        rows.append(f"{i}.png,{i}.wav,{'ab'[i % 2]}")
    (root / "data.csv").write_text("photo,sound,label\n" + "\n".join(rows) + "\n")
    config = {"name": "bombs", "data": {"source": str(root / "data.csv")}, "output_dir": str(root / "run"),
              "modalities": {"photo": {"type": "image", "size": 32}, "sound": {"type": "audio"}},
              "target": {"field": "label", "task": "multiclass"},
              "training": {"epochs": 1, "batch_size": 8, "progress_bar": False}}
    train(parse_config(config))
    return root / "run"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png_bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (12000, 12000)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def flac_hour() -> bytes:
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=16000, channels=1, format="FLAC") as f:
        block = np.zeros(16000 * 60, dtype=np.float32)
        for _ in range(60):
            f.write(block)
    return buf.getvalue()


def wav(samples: np.ndarray, rate: int, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def bodies() -> list[tuple[str, int, Any]]:
    """(name, concurrent copies, body) of each step; a body is JSON-able or raw bytes."""
    png = b64(png_bomb())
    deep = b'{"records": [' + b"[" * 5000 + b"]" * 5000 + b"]}"
    return [
        ("PNG 12000x12000", 1, {"records": [{"photo": png}]}),
        ("8 PNG bombs at once", 8, {"records": [{"photo": png}]}),
        ("one-hour FLAC", 1, {"records": [{"sound": b64(flac_hour())}]}),
        ("WAV at 999983 Hz", 1, {"records": [{"sound": b64(wav(np.zeros(999983, np.int16), 999983, "PCM_16"))}]}),
        ("20 PNG bombs in one request", 1, {"records": [{"photo": png}] * 20}),
        ("float WAV of 1e30 samples", 1, {"records": [{"sound": b64(wav(np.full(8000, 1e30, np.float32), 16000,
                                                                        "FLOAT"))}]}),
        ("JSON nested 5000 deep", 1, deep),
        ("lone-surrogate field name", 1, b'{"records": [{"\\udc80": 1}]}'),
        ("100000-digit integer", 1, b'{"records": [{"photo": ' + b"9" * 100_000 + b"}]}"),
    ]


def memory_mb(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


async def send(url: str, body: Any, copies: int) -> list[int | str]:
    async with httpx.AsyncClient(timeout=300) as c:
        async def one() -> int | str:
            try:
                if isinstance(body, bytes):
                    r = await c.post(url, content=body, headers={"content-type": "application/json"})
                else:
                    r = await c.post(url, json=body)
                ok = r.status_code != 200 or all(p.get("probabilities") is None or None not in
                                                  p["probabilities"].values() for p in r.json()["predictions"])
                return r.status_code if ok else f"{r.status_code} null"
            except httpx.HTTPError as err:
                return type(err).__name__
        return list(await asyncio.gather(*(one() for _ in range(copies))))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--label", default="after")
    parser.add_argument("--src", default=None, help="source tree put first on the server's PYTHONPATH")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp))
        port = free_port()
        env = {"OMP_NUM_THREADS": "1"}
        if args.src:
            env["PYTHONPATH"] = args.src + os.pathsep + os.environ.get("PYTHONPATH", "")
        cmd = [sys.executable, "-m", "polymodal.cli", "serve", str(run), "--port", str(port), "--timeout-s", "30"]
        proc = start_server(cmd, port, Path(tmp) / "server.log", env=env)
        lines: list[str] = []
        try:
            command = f"OMP_NUM_THREADS=1 python benchmarks/serve_bombs.py --label {args.label}" + (
                f" --src {args.src}" if args.src else "")
            lines += [f"\n## {args.label}\n", f"`{command}`\n",
                     f"start: {memory_mb(proc.pid)['VmRSS']:.0f} MB resident, load average "
                     f"{os.getloadavg()[0]:.2f}\n", "| step | replies | seconds | peak MB (VmHWM) | resident MB |",
                     "|---|---|---|---|---|"]
            for name, copies, body in bodies():
                t0 = time.perf_counter()
                codes = asyncio.run(send(f"http://127.0.0.1:{port}/predict", body, copies))
                mem = memory_mb(proc.pid)
                lines.append(f"| {name} | {', '.join(map(str, sorted(set(codes), key=str)))} | "
                             f"{time.perf_counter() - t0:.1f} | {mem['VmHWM']:.0f} | {mem['VmRSS']:.0f} |")
                print(lines[-1], flush=True)
            lines.append(f"\nload average at the end: {os.getloadavg()[0]:.2f}\n")
        finally:
            with RESULTS.open("a") as out:
                out.write("\n".join(lines) + "\n")
            stop_server(proc, kill=True)  # a server still decoding bombs does not stop on SIGTERM


if __name__ == "__main__":
    main()
