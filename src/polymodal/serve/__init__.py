"""HTTP serving of a trained run: FastAPI app with micro-batching and a small web page (extra `serve`).

FastAPI, uvicorn and torch are imported on use (`create_app`, `serve`), not by `import polymodal.serve`: the
settings (`ServeSettings`) are light, so that the command line can build its options from them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polymodal.serve.settings import DEFAULT_PORT, ServeSettings

if TYPE_CHECKING:
    from polymodal.serve.app import create_app


def serve(run_dir: str | Path, host: str = ServeSettings.host, port: int = DEFAULT_PORT,
          settings: ServeSettings | None = None) -> None:
    """Serve a run directory until interrupted (uvicorn; `settings.workers` processes share the port); `host` is
    the address bound (a non-loopback one needs `settings.api_key`)."""
    import uvicorn

    from polymodal.serve.app import create_app

    settings = replace(settings or ServeSettings(), host=host)
    if settings.workers == 1:
        uvicorn.run(create_app(run_dir, settings), host=host, port=port, log_level="info")
        return
    from polymodal.serve.workers import prepare_workers

    prepare_workers(run_dir, settings)
    uvicorn.run("polymodal.serve.workers:worker_app", factory=True, host=host, port=port, log_level="info",
                workers=settings.workers)


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from polymodal.serve.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ServeSettings", "create_app", "serve"]
