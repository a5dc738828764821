"""Several server processes (`polymodal serve --workers N`): uvicorn starts N workers, each builds its app here.

The parent puts the run directory and settings in the environment; each worker reads them back, takes one
torch thread (unless the environment sets a count: N processes share the cores) and loads its own model.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from fastapi import FastAPI

from polymodal.serve.app import ServeSettings, create_app

ENV = "POLYMODAL_SERVE_WORKER"


def prepare_workers(run_dir: str | Path, settings: ServeSettings) -> None:
    """Hand the run and settings to the worker processes; an ONNX export is written once, here, if needed."""
    if settings.backend == "onnx":
        from polymodal.rundir import load_run
        from polymodal.serve.backends import OnnxBackend

        OnnxBackend(load_run(run_dir))
    os.environ[ENV] = json.dumps({"run_dir": str(Path(run_dir).resolve()), "settings": asdict(settings)})


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn's factory)."""
    import torch

    from polymodal.threads import user_threads

    spec = json.loads(os.environ[ENV])
    if user_threads() is None:
        torch.set_num_threads(1)
    return create_app(spec["run_dir"], ServeSettings(**spec["settings"]))
