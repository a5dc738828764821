"""HTTP serving of a trained run: FastAPI app with micro-batching and a small web page (extra `serve`).

FastAPI and uvicorn are imported here, not by `import polymodal`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from polymodal.serve.app import ServeSettings, create_app


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000,
          settings: ServeSettings | None = None) -> None:
    """Serve a run directory until interrupted (uvicorn; `settings.workers` processes share the port); `host` is
    the address bound (a non-loopback one needs `settings.api_key`)."""
    import uvicorn

    settings = replace(settings or ServeSettings(), host=host)
    if settings.workers == 1:
        uvicorn.run(create_app(run_dir, settings), host=host, port=port, log_level="info")
        return
    from polymodal.serve.workers import prepare_workers

    prepare_workers(run_dir, settings)
    uvicorn.run("polymodal.serve.workers:worker_app", factory=True, host=host, port=port, log_level="info",
                workers=settings.workers)


__all__ = ["ServeSettings", "create_app", "serve"]
