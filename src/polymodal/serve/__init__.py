"""HTTP serving of a trained run: FastAPI app with micro-batching and a small web page (extra `serve`).

FastAPI and uvicorn are imported here, not by `import polymodal`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from polymodal.serve.app import ServeSettings, create_app


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000,
          settings: ServeSettings | None = None) -> None:
    """Serve a run directory until interrupted (uvicorn, one process); `host` is the address bound (a
    non-loopback one needs `settings.api_key`)."""
    import uvicorn

    app = create_app(run_dir, replace(settings or ServeSettings(), host=host))
    uvicorn.run(app, host=host, port=port, log_level="info")


__all__ = ["ServeSettings", "create_app", "serve"]
