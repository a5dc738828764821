"""Load test of `polymodal serve` on loopback: latency, throughput and server memory, batching on and off.

    OMP_NUM_THREADS=1 python benchmarks/serve_load.py [--run RUN_DIR] [--clients 32] [--requests 10000]

Starts a real uvicorn server (`polymodal serve`, a child process) once with micro-batching (max_batch 32, wait
5 ms) and once without (max_batch 1). Each time N concurrent clients (asyncio + httpx, one connection pool)
send single-record JSON requests (a base64 PNG digit and a base64 WAV spoken digit from AV-Digits' test split)
until `--requests` have been answered. Prints p50/p99 latency, throughput and the server's resident memory
(VmRSS) after a warm-up, half-way and after the load. Without --run, trains a small AV-Digits run first (3 epochs) into
runs/serve_load. Writes benchmarks/results/serve_load.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from server_process import free_port, running_server  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "serve_load.md"


def ensure_run(run: Path) -> Path:
    if (run / "model.safetensors").is_file():
        return run
    from polymodal.factory import load_config
    from polymodal.training.fit import train

    config = load_config(Path(__file__).parents[1] / "configs" / "av_digits_concat.yaml")
    training = config.training.model_copy(update={"epochs": 3, "progress_bar": False})
    train(config.model_copy(update={"output_dir": str(run), "training": training}))
    return run


def payloads(run: Path, n: int) -> list[dict[str, Any]]:
    """`n` single-record request bodies from the run's test split (image and audio base64-encoded)."""
    from polymodal.data.sources import load_splits
    from polymodal.rundir import load_run

    config = load_run(run).config
    table = load_splits(config.data, config.target.field)["test"]  # type: ignore[arg-type]
    fields = {m: config.field_of(m) for m in config.modalities}
    bodies = []
    for _, row in table.frame.head(n).iterrows():
        record = {f: base64.b64encode((table.root / row[f]).read_bytes()).decode() for f in fields.values()}
        bodies.append({"records": [record]})
    return bodies


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(url: str, bodies: list[dict[str, Any]], clients: int, total: int) -> tuple[list[float], float, int]:
    """Latencies (s) of `total` requests sent by `clients` concurrent loops, wall time, and non-200 count."""
    latencies: list[float] = []
    errors = 0
    sent = 0

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal sent, errors
        while sent < total:
            body = bodies[sent % len(bodies)]
            sent += 1
            t0 = time.perf_counter()
            response = await c.post(url, json=body)
            latencies.append(time.perf_counter() - t0)
            errors += response.status_code != 200

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as c:
        start = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        return latencies, time.perf_counter() - start, errors


def measure(run: Path, bodies: list[dict[str, Any]], max_batch: int, max_wait_ms: float, clients: int,
            total: int) -> dict[str, float]:
    port = free_port()
    cmd = [sys.executable, "-m", "polymodal.cli", "serve", str(run), "--port", str(port), "--max-batch",
           str(max_batch), "--max-wait-ms", str(max_wait_ms), "--queue-size", "1024"]
    url = f"http://127.0.0.1:{port}/predict"
    with running_server(cmd, port, Path(tempfile.gettempdir()) / f"serve_load_{port}.log") as proc:
        asyncio.run(load(url, bodies, clients, 200))  # warm-up
        before = rss_mb(proc.pid)
        latencies, wall, errors = asyncio.run(load(url, bodies, clients, total // 2))
        middle = rss_mb(proc.pid)
        more, wall2, errors2 = asyncio.run(load(url, bodies, clients, total - total // 2))
        after = rss_mb(proc.pid)
        latencies, wall, errors = latencies + more, wall + wall2, errors + errors2
        batches = httpx.get(f"http://127.0.0.1:{port}/health").json()["batches"]
    lat = np.asarray(latencies) * 1000
    return {"load_avg": os.getloadavg()[0], "max_batch": max_batch, "max_wait_ms": max_wait_ms,
            "requests": len(latencies), "errors": errors,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "throughput_rps": len(latencies) / wall, "records_per_pass": (len(latencies) + 200) / batches,
            "rss_before_mb": before, "rss_middle_mb": middle, "rss_after_mb": after}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", default="runs/serve_load", help="run directory (trained here if missing)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args()
    run = ensure_run(Path(args.run))
    bodies = payloads(run, 256)
    rows = [measure(run, bodies, 32, 5.0, args.clients, args.requests),
            measure(run, bodies, 1, 0.0, args.clients, args.requests)]
    header = ("| batching | max_batch | max_wait_ms | requests | non-200 | p50 ms | p99 ms | requests/s | "
              "records per forward pass | server RSS before MB | after half MB | after all MB | "
              "machine load avg (1 min) |")
    lines = [header, "|" + "---|" * 13]
    for r in rows:
        lines.append(f"| {'on' if r['max_batch'] > 1 else 'off'} | {r['max_batch']} | {r['max_wait_ms']:g} | "
                     f"{r['requests']} | {r['errors']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{r['throughput_rps']:.0f} | {r['records_per_pass']:.1f} | {r['rss_before_mb']:.0f} | "
                     f"{r['rss_middle_mb']:.0f} | "
                     f"{r['rss_after_mb']:.0f} | {r['load_avg']:.1f} |")
    table = "\n".join(lines)
    print(table)
    command = (f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')} python benchmarks/serve_load.py "
               f"--run {args.run} --clients {args.clients} --requests {args.requests}")
    RESULTS.write_text(
        f"# serve_load\n\n```\n{command}\n```\n\n"
        f"`polymodal serve` (uvicorn, one process) on loopback, {args.clients} concurrent clients (asyncio + httpx in "
        "one client process on the same machine), single-record JSON requests to POST /predict: a base64 PNG "
        "(28x28 digit) and a base64 WAV (spoken digit) from AV-Digits' test split, model av_digits_concat "
        "(image_cnn + audio_cnn, concat fusion) trained 3 epochs. Latency is measured by the client; RSS "
        "(VmRSS of the server process) after a 200-request warm-up, after half the requests and after all of them. "
        "2-core CPU machine "
        "shared with other jobs (its 1-minute load average at the end of each row is in the last column), no GPU; "
        "client and server share the two cores.\n\n" + table + "\n")
    print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
