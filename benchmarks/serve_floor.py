"""`polymodal serve` against the HTTP floor: a bare FastAPI app that only parses the same JSON and base64.

    OMP_NUM_THREADS=1 python benchmarks/serve_floor.py [--run RUN_DIR] [--clients 32] [--requests 2000]
        [--repeats 2] [--variants torch,onnx,onnx-w2]

Model: the quickstart's concat model on AV-Digits (trained 3 epochs into RUN_DIR if missing, see
serve_load.py); requests: one record each, a base64 PNG and a base64 WAV from the test split, POST /predict.
Each server is a child process (uvicorn with whatever loop and parser it finds: uvloop/httptools with the
serve extra); the same client (asyncio + httpx, `--clients` concurrent loops) drives the floor and the
polymodal variants alternately (floor, variant 1, floor, variant 2, ..., repeated), so both see the same
machine. A variant's ratio is its throughput over the median throughput of the floor runs with as many worker
processes. Prints a table with p50/p99 latency and the load average; writes benchmarks/results/serve_floor.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

sys.path.insert(0, str(Path(__file__).parent))
from serve_load import ensure_run, load, payloads  # noqa: E402
from server_process import free_port, running_server  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "serve_floor.md"
VARIANTS = {"plain": [], "torch": ["--backend", "torch"], "onnx": ["--backend", "onnx"],
            "onnx-w2": ["--backend", "onnx", "--workers", "2"], "torch-w2": ["--backend", "torch", "--workers", "2"]}


def floor_app() -> FastAPI:
    """The HTTP floor: parse the JSON body and decode every base64 field, answer a small JSON."""
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        data = json.loads(await request.body())
        sizes = [{k: len(base64.b64decode(v)) for k, v in r.items()} for r in data["records"]]
        return JSONResponse({"predictions": [{"prediction": "0", "bytes": s} for s in sizes]})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "batches": 1}
    return app


def floor_cmd(port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "serve_floor:floor_app", "--factory", "--port", str(port),
            "--workers", str(workers), "--log-level", "warning"]


def polymodal_cmd(run: Path, port: int, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "polymodal.cli", "serve", str(run.resolve()), "--port", str(port),
            "--queue-size", "1024", *extra]


def measure(cmd_of, bodies: list[dict[str, Any]], clients: int, total: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    port = free_port()
    url = f"http://127.0.0.1:{port}/predict"
    log = Path(tempfile.gettempdir()) / f"serve_floor_{port}.log"
    # a loaded machine starts N workers slowly
    with running_server(cmd_of(port), port, log, timeout_s=900, cwd=Path(__file__).parent):
        asyncio.run(load(url, bodies, clients, 200))  # warm-up
        latencies, wall, errors = asyncio.run(load(url, bodies, clients, total))
    lat = np.asarray(latencies) * 1000
    return {"rps": len(latencies) / wall, "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)), "errors": errors, "load": os.getloadavg()[0]}


def workers_of(extra: list[str]) -> int:
    return int(extra[extra.index("--workers") + 1]) if "--workers" in extra else 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", default="runs/serve_load", help="run directory (trained here if missing)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variants", default="torch,onnx,onnx-w2")
    parser.add_argument("--results", default=str(RESULTS), help="markdown file to write")
    args = parser.parse_args()
    run = ensure_run(Path(args.run))
    bodies = payloads(run, 256)
    names = args.variants.split(",")
    floors: dict[int, list[dict[str, float]]] = {}
    rows: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for _ in range(args.repeats):
        for name in names:
            w = workers_of(VARIANTS[name])
            floors.setdefault(w, []).append(measure(lambda p: floor_cmd(p, w), bodies, args.clients, args.requests))
            rows[name].append(measure(lambda p: polymodal_cmd(run, p, VARIANTS[name]), bodies, args.clients,
                                      args.requests))
            print(f"floor x{w} {floors[w][-1]['rps']:.0f} req/s, {name} {rows[name][-1]['rps']:.0f} req/s", flush=True)
    lines = ["| server | workers | requests/s (median) | ratio to floor | p50 ms | p99 ms | non-200 | load avg |",
             "|---|---|---|---|---|---|---|---|"]
    for w, runs in floors.items():
        lines.append(row("floor (FastAPI, JSON + base64 only)", w, runs, None))
    for name in names:
        w = workers_of(VARIANTS[name])
        lines.append(row(f"polymodal serve {' '.join(VARIANTS[name])}", w, rows[name],
                         statistics.median(r["rps"] for r in floors[w])))
    table = "\n".join(lines)
    print(table)
    command = (f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')} python benchmarks/serve_floor.py "
               f"--run {args.run} --clients {args.clients} --requests {args.requests} --repeats {args.repeats} "
               f"--variants {args.variants} --results {args.results}")
    Path(args.results).write_text(f"# serve_floor\n\n```\n{command}\n```\n\n{__doc__.split(chr(10) + chr(10), 2)[2]}\n"
                       f"{args.clients} clients, {args.requests} requests per measurement after 200 warm-up.\n\n"
                       f"{table}\n")
    print(f"written: {args.results}")


def row(name: str, workers: int, runs: list[dict[str, float]], floor: float | None) -> str:
    rps = statistics.median(r["rps"] for r in runs)
    ratio = "1" if floor is None else f"{rps / floor:.2f}"
    return (f"| {name} | {workers} | {rps:.0f} | {ratio} | {statistics.median(r['p50'] for r in runs):.1f} | "
            f"{statistics.median(r['p99'] for r in runs):.1f} | {sum(int(r['errors']) for r in runs)} | "
            f"{max(r['load'] for r in runs):.1f} |")


if __name__ == "__main__":
    main()
