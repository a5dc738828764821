"""The HTTP app of a trained run (FastAPI): predict, embed, health, metadata, a web page and the run's report.

    app = create_app("runs/av_digits_concat", ServeSettings(max_batch=32, max_wait_ms=5))
    uvicorn.run(app, port=8000)            # or: polymodal serve runs/av_digits_concat --port 8000

Records are decoded by the run's processors in a worker thread (off the event loop); the model then runs on
micro-batches gathered from concurrent requests (`polymodal.serve.batching`), with PyTorch or onnxruntime
(`polymodal.serve.backends`), computing only what the endpoint returns.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from polymodal.data.dataset import Decoded, MultimodalDataset, to_model_inputs
from polymodal.evaluation.reliability import load_reliability, reliability_records
from polymodal.output import Output
from polymodal.rundir import Run, load_run
from polymodal.serve.backends import build_backend
from polymodal.serve.batching import MicroBatcher, QueueFull
from polymodal.serve.guard import finite_results, safe_text
from polymodal.serve.inputs import (
    InputField,
    Problem,
    RequestError,
    coerce_records,
    input_fields,
    merge,
    read_records,
)
from polymodal.serve.limits import MB, DecodeBudget, DecodeLimits, check_files, resolve_limits
from polymodal.serve.security import RequestGuard, check_binding, default_hosts
from polymodal.serve.settings import ServeSettings

STATIC = Path(__file__).parent / "static"


@dataclass
class Work:
    """One request's decoded records and what it asks for."""

    decoded: Decoded
    explain: bool = False
    embed: bool = False  # /embed: the fused representation instead of predictions

    @property
    def size(self) -> int:
        return len(self.decoded.rows)


class Service:
    """The loaded run and its forward pass over batches of requests (called from the batching worker)."""

    def __init__(self, run: Run, device: str = "cpu", backend: str = "torch") -> None:
        self.run = run
        self.backend = build_backend(backend, run, device)
        self.device = self.backend.device
        run.model.to(self.device).eval()
        self.fields = input_fields(run.config, run.processors)
        self.ragged = {m: p.ragged for m, p in run.processors.items()}
        self.classes: list[str] = list(getattr(run.task, "classes", []))
        self.reliability = load_reliability(run.path, required=False)

    @property
    def predicts(self) -> bool:
        return self.run.config.target.task != "retrieval"

    @property
    def explains(self) -> bool:
        return self.run.task.num_outputs > 0  # Shapley contributions need a task head

    def infer(self, works: Sequence[Work]) -> list[list[dict[str, Any]]]:
        """Per request, per record: the fused embedding (/embed) or the prediction and probabilities, with the
        per-modality reliability where the run has its calibration (and contributions if asked)."""
        dataset = MultimodalDataset(merge([w.decoded for w in works]), self.ragged)
        out = self.forward(dataset)
        sizes = [w.size for w in works]
        starts = np.cumsum([0] + sizes)
        records: list[dict[str, Any]] = [{} for _ in range(int(starts[-1]))]
        embed = [i for k, w in enumerate(works) if w.embed for i in range(starts[k], starts[k + 1])]
        if embed:
            for i, row in zip(embed, out.fused[embed].cpu().numpy().tolist()):
                records[i]["embedding"] = row
        if self.predicts and len(embed) < len(records):
            self._predictions(out, records)
            self._reliability(out, dataset, records, set(embed))
        self._explain(works, records)
        return _split(records, sizes)

    def _reliability(self, out: Output, dataset: MultimodalDataset, records: list[dict[str, Any]],
                     skip: set[int]) -> None:
        """Per modality: reliability, ood, distance (+ the fusion's own uncertainty), on /predict's records."""
        if not self.reliability or set(self.reliability) - set(out.features):
            return  # the onnx backend's outputs carry no encoder features: no reliability there
        for i, rel in enumerate(reliability_records(self.reliability, out, dataset.present)):
            if i not in skip:
                records[i]["reliability"] = rel

    def _predictions(self, out: Output, records: list[dict[str, Any]]) -> None:
        proba = {c: np.asarray(p, dtype=np.float64) for c, p in self.run.task.proba(out.logits).items()}
        for i, pred in enumerate(self.run.task.predict(self.run.task.scores(out))):
            records[i]["prediction"] = pred
            if proba:
                records[i]["probabilities"] = {c: float(p[i]) for c, p in proba.items()}

    @torch.inference_mode()
    def forward(self, dataset: MultimodalDataset) -> Output:
        """One forward pass over every record (what `predict_outputs` does per batch, without its loader)."""
        batch = dataset.__getitems__(range(len(dataset))).to(self.device)
        return self.backend(to_model_inputs(batch, self.run.processors, train=False))

    def _explain(self, works: Sequence[Work], records: list[dict[str, Any]]) -> None:
        asked = [i for i, w in enumerate(works) if w.explain]
        if not asked:
            return
        from polymodal.evaluation.contribution import explain_records

        frame = explain_records(self.run, MultimodalDataset(merge([works[i].decoded for i in asked]), self.ragged))
        starts = np.cumsum([0] + [w.size for w in works])
        positions = [p for i in asked for p in range(starts[i], starts[i + 1])]
        for row, pos in zip(frame.to_dict("records"), positions):
            records[pos]["explanation"] = {
                "contributions": {m: float(row[f"shapley_{m}"]) for m in self.run.model.modalities},
                "value_full": float(row["value_full"]), "value_empty": float(row["value_empty"]),
            }

    def metadata(self, settings: ServeSettings) -> dict[str, Any]:
        config = self.run.config
        modalities = {m: {"type": p.kind, "fields": [f.describe() for f in self.fields.values() if f.modality == m]}
                      for m, p in self.run.processors.items()}
        return {
            "name": config.name,
            "version": _version(),
            "task": config.target.task,
            "target": {"field": config.target.field, "classes": self.classes},
            "fusion": {"name": config.fusion.name, **config.fusion.options},
            "modalities": modalities,
            "explain": self.explains,
            "limits": settings.public(resolve_limits(self.run.processors, asdict(settings))),
        }


def _split(records: list[dict[str, Any]], sizes: list[int]) -> list[list[dict[str, Any]]]:
    starts = np.cumsum([0] + sizes)
    return [records[starts[k]: starts[k + 1]] for k in range(len(sizes))]


def _version() -> str:
    try:
        return importlib.metadata.version("polymodal")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ------------------------------------------------------------------------------------------------ request bodies


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, message=f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes "
                                        "(--max-body-mb); send fewer records per request or smaller files")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, message=f"request body exceeds the limit of {limit} bytes (--max-body-mb)")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # noqa: SLF001 - lets `request.form()` parse what was already read
    return body


def parse_json(body: bytes) -> tuple[list[Any], bool]:
    """The records (and the explain flag) of a JSON body `{"records": [...], "explain": false}`."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise RequestError(400, message="the body nests JSON too deeply; a record is an object of fields") from None
    except ValueError as err:  # invalid JSON or UTF-8, or an integer of more digits than Python converts
        raise RequestError(400, message=f"the body is not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        raise RequestError(400, message='expected a JSON object {"records": [{field: value, ...}, ...]}')
    unknown = [k for k in data if k not in ("records", "explain")]
    if unknown:
        raise RequestError(400, message=f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: records, explain")
    explain = data.get("explain", False)
    if not isinstance(explain, bool):
        raise RequestError(400, message="'explain' must be true or false")
    return data["records"], explain


async def parse_form(request: Request, fields: dict[str, InputField], limit: int) -> list[Any]:
    """One record from a multipart form: text fields and uploaded files, by field name."""
    from starlette.datastructures import UploadFile

    try:
        form = await request.form(max_part_size=limit)
    except Exception as err:  # noqa: BLE001 - a malformed multipart body is the client's error
        raise RequestError(400, message=f"cannot parse the multipart form ({err})") from None
    record: dict[str, Any] = {}
    problems = []
    for key in form:
        values = form.getlist(key)
        if len(values) > 1:
            problems.append(Problem(0, key, "given more than once; one value per field"))
        value = values[0]
        record[key] = await value.read() if isinstance(value, UploadFile) else value
        if isinstance(value, UploadFile) and key in fields and not fields[key].is_file:
            record[key] = record[key].decode("utf-8", errors="replace")
    if problems:
        raise RequestError(400, problems)
    return [record]


# --------------------------------------------------------------------------------------------------- the app


def create_app(run: str | Path | Run, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app serving one run directory (or an already loaded Run)."""
    settings = settings or ServeSettings()
    check_binding(settings.host, settings.api_key)
    service = Service(run if isinstance(run, Run) else load_run(run), settings.device, settings.backend)
    limits = resolve_limits(service.run.processors, asdict(settings))
    budget = DecodeBudget(int(limits.decode_memory_mb * MB))
    batcher: MicroBatcher[Work, list[dict[str, Any]]] = MicroBatcher(
        service.infer, settings.max_batch, settings.max_wait_ms, settings.queue_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title=f"polymodal: {service.run.config.name}", version=_version(), lifespan=lifespan,
                  description=f"Predictions and embeddings of the run {service.run.config.name!r} "
                              f"({service.run.config.target.task}).")
    app.state.service, app.state.batcher, app.state.settings = service, batcher, settings
    app.add_exception_handler(RequestError, _request_error)  # type: ignore[arg-type]
    app.add_middleware(RequestGuard, allowed_hosts=settings.allowed_hosts or default_hosts(settings.host),
                       api_key=settings.api_key)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    async def records_of(request: Request) -> tuple[list[Any], bool]:
        limit = int(settings.max_body_mb * 1024 * 1024)
        body = await read_body(request, limit)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            records, explain = parse_json(body)
        elif ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            records, explain = await parse_form(request, service.fields, limit), False
        else:
            raise RequestError(415, message=f"content type {ctype or 'none'!r} is not accepted; send "
                                            "application/json, multipart/form-data or a url-encoded form")
        if not records:
            raise RequestError(400, message="the request holds no records; send at least one")
        if len(records) > settings.max_records:
            raise RequestError(413, message=f"{len(records)} records in one request; the limit is "
                                            f"{settings.max_records} (--max-records)")
        return records, explain

    def checked(records: list[Any]) -> tuple[list[dict[str, Any]], int]:
        """Coerced records and the bytes decoding their files needs, every file header within the limits."""
        values = coerce_records(records, service.fields)
        return values, check_files(values, service.fields, service.run.processors, limits)

    async def answer(records: list[Any], explain: bool, embed: bool) -> list[dict[str, Any]]:
        if explain and not service.explains:
            raise RequestError(400, message=f"explain needs a task head; a {service.run.config.target.task} run "
                                            "has none")
        with batcher.incoming():  # a batch being collected may wait for this request
            values, cost = await run_in_threadpool(checked, records)
            decoded = await budget.run(cost, read_records, values, service.fields, service.run.processors)
        work = Work(decoded, explain, embed)
        try:
            return finite_results(await batcher.submit(work, work.size, settings.timeout_s))
        except QueueFull as err:
            raise RequestError(503, message=f"the server is busy ({err}); retry shortly") from None

    async def run_records(request: Request, explain: bool, embed: bool = False) -> list[dict[str, Any]]:
        with batcher.incoming():  # a batch being collected may wait for this request
            records, explain_in_body = await records_of(request)
        try:  # the timeout covers decoding, the queue and inference
            return await asyncio.wait_for(answer(records, explain or explain_in_body, embed), settings.timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(504, message=f"no result within {settings.timeout_s:g} s (--timeout-s); the server "
                                            "is overloaded or the request too large") from None

    body_doc = {"requestBody": _request_body_doc(service.fields, settings)}

    @app.post("/predict", openapi_extra=body_doc, responses=_ERROR_DOCS,
              summary="Predict: label, class probabilities and (explain=true) modality contributions per record")
    async def predict(request: Request, explain: bool = Query(False, description="add per-modality Shapley "
                                                              "contributions (one forward pass per coalition)")
                      ) -> dict[str, Any]:
        if not service.predicts:
            raise RequestError(400, message=f"a {service.run.config.target.task} run predicts no labels; "
                                            "use POST /embed")
        results = await run_records(request, explain)
        return {"predictions": results}

    @app.post("/embed", openapi_extra=body_doc, responses=_ERROR_DOCS,
              summary="Embed: the fused representation of every record")
    async def embed(request: Request) -> dict[str, Any]:
        results = await run_records(request, explain=False, embed=True)
        embeddings = [r["embedding"] for r in results]
        return {"embeddings": embeddings, "dim": len(embeddings[0])}

    @app.get("/health", summary="Liveness and queue state")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "waiting": batcher.waiting, "batches": batcher.batches}

    @app.get("/metadata", summary="Modalities with their fields and types, target, task, fusion, version")
    async def metadata() -> dict[str, Any]:
        return service.metadata(settings)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/report", response_class=HTMLResponse, summary="The run's report (report.html)",
             responses={404: {"description": "the run has no report yet"}})
    async def report() -> Response:
        path = service.run.path / "report.html"
        if not path.is_file():
            return HTMLResponse("<p>This run has no report yet: run <code>polymodal report RUN_DIR</code> on the "
                                "run directory to write one.</p>", status_code=404)
        return FileResponse(path, media_type="text/html")

    return app


async def _request_error(request: Request, err: RequestError) -> JSONResponse:
    headers = {"Retry-After": "1"} if err.status == 503 else None
    errors = [{"record": p.record, "field": safe_text(p.field), "message": safe_text(p.message)}
              for p in err.problems]
    return JSONResponse({"detail": safe_text(str(err)), "errors": errors}, status_code=err.status, headers=headers)


_ERROR = {"content": {"application/json": {"schema": {"type": "object", "properties": {
    "detail": {"type": "string"}, "errors": {"type": "array", "items": {"type": "object"}}}}}}}
_ERROR_DOCS: dict[int | str, dict[str, Any]] = {
    400: {"description": "malformed records (each problem names its record index and field)", **_ERROR},
    401: {"description": "the server needs an API key (Authorization: Bearer <key> or X-API-Key)", **_ERROR},
    403: {"description": "a cross-site request (its Origin is another site)", **_ERROR},
    413: {"description": "body, number of records, or a file's declared size over the limit", **_ERROR},
    415: {"description": "neither JSON nor multipart", **_ERROR},
    422: {"description": "a file declares values out of range (sample rate, channels), or the model's output "
                         "for a record is not finite", **_ERROR},
    503: {"description": "queue full: retry after the Retry-After header's seconds", **_ERROR},
    504: {"description": "no result within the request timeout", **_ERROR},
}


def _request_body_doc(fields: dict[str, InputField], settings: ServeSettings) -> dict[str, Any]:
    record = {"type": "object", "additionalProperties": False,
              "properties": {n: f.schema(multipart=False) for n, f in fields.items()}}
    return {"required": True, "content": {
        "application/json": {"schema": {
            "type": "object", "required": ["records"], "additionalProperties": False,
            "properties": {"records": {"type": "array", "items": record, "minItems": 1,
                                       "maxItems": settings.max_records},
                           "explain": {"type": "boolean"}}}},
        "multipart/form-data": {"schema": {
            "type": "object", "properties": {n: f.schema(multipart=True) for n, f in fields.items()}}},
    }}
