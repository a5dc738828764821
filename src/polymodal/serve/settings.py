"""The server's settings: one typed dataclass, read by the app and turned into `polymodal serve`'s options.

Importable without torch or FastAPI (the command line builds its parser from it). Each field's `help` metadata is
the option's help text; its default is the option's default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from polymodal.serve.security import default_hosts

if TYPE_CHECKING:
    from polymodal.serve.limits import DecodeLimits


DEFAULT_PORT = 8000  # `serve`'s and `polymodal serve --port`'s


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help}, **extra)


@dataclass(frozen=True)
class ServeSettings:
    """Limits and batching of the server (the `polymodal serve` options)."""

    max_batch: int = _opt(32, "records per forward pass (1 turns batching off)")
    max_wait_ms: float = _opt(5.0, "how long a batch waits for more requests")
    queue_size: int = _opt(256, "requests waiting; more are refused with 503")
    max_records: int = _opt(256, "records per request")
    max_body_mb: float = _opt(20.0, "request body size limit")
    timeout_s: float = _opt(30.0, "per request, decoding + queue wait + inference; then 504")
    device: str = _opt("cpu", "where the model runs: cpu, cuda, cuda:1, mps")
    # decoding limits (polymodal.serve.limits); None: derived from the run's processors
    max_image_pixels: int | None = _opt(None, "largest image or video frame, width x height (default: 4096x3072, "
                                              "or more for a model with large images)")
    max_audio_seconds: float | None = _opt(None, "longest audio a request may send (default: 60, or 4x the "
                                                 "model's max_seconds)")
    max_sample_rate: int | None = _opt(None, "highest declared audio sample rate (default: 192000)")
    max_channels: int | None = _opt(None, "most image bands or audio channels (default: 8)")
    max_video_frames: int | None = _opt(None, "most frames a video may declare (default: 60 per second of the "
                                              "model's clip)")
    decode_memory_mb: float | None = _opt(None, "memory all requests may decode into at once (default: 1024)")
    # who may connect (polymodal.serve.security)
    host: str = _opt("127.0.0.1", "the address bound")
    allowed_hosts: tuple[str, ...] | None = _opt(None, "Host header names accepted, '*' for any (default: the "
                                                       "bound address's)")
    api_key: str | None = _opt(None, "require this key (Authorization: Bearer KEY); prefer the POLYMODAL_API_KEY "
                                     "environment variable; needed off loopback", repr=False)
    backend: Literal["torch", "onnx"] = _opt("torch", "forward pass: PyTorch, or onnxruntime on the run's ONNX "
                                                      "export (written if absent)")
    workers: int = _opt(1, "server processes sharing the port (each loads the model)")

    def public(self, limits: DecodeLimits) -> dict[str, Any]:
        """The settings as `/metadata` lists them: decoding limits resolved, the API key only as required or not."""
        out = {k: v for k, v in asdict(self).items() if k != "api_key"}
        return {**out, **limits.to_json(), "allowed_hosts": list(self.allowed_hosts or default_hosts(self.host)),
                "api_key_required": bool(self.api_key)}
