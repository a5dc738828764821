"""HTTP serving: endpoints, inputs as the processors read them, 4xx for every malformed case, micro-batching."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import make_config
from fastapi import FastAPI
from fastapi.testclient import TestClient

from polymodal.factory import parse_config
from polymodal.predictor import Predictor
from polymodal.serve import ServeSettings, create_app
from polymodal.serve.batching import MicroBatcher, QueueFull
from polymodal.training.fit import train

MODALITIES = ["photo", "sound", "title", "specs"]


@pytest.fixture(scope="module")
def run_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serve") / "run"
    train(parse_config(make_config(data_dir, out, MODALITIES, epochs=2)))
    return out


@pytest.fixture(scope="module")
def predictor(run_dir: Path) -> Predictor:
    return Predictor.load(run_dir)


@pytest.fixture(scope="module")
def client(run_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(run_dir, ServeSettings(max_records=8, max_body_mb=0.5)), base_url="http://localhost") as c:
        yield c


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def table(data_dir: Path, n: int) -> pd.DataFrame:
    return pd.read_parquet(data_dir / "data.parquet").head(n)


def as_json(frame: pd.DataFrame, root: Path) -> list[dict[str, Any]]:
    """Records as a client sends them: image base64, audio as a data URL, text and numbers inline."""
    return [{"photo": b64(root / r.photo), "sound": "data:audio/wav;base64," + b64(root / r.sound),
             "title": r.title, "price": r.price, "brand": r.brand} for r in frame.itertuples()]


def test_health_and_metadata(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    meta = client.get("/metadata").json()
    assert meta["task"] == "multiclass" and meta["target"] == {"field": "label", "classes": ["x", "y", "z"]}
    assert meta["fusion"]["name"] == "concat" and meta["version"]
    types = {f["name"]: f["type"] for m in meta["modalities"].values() for f in m["fields"]}
    assert types == {"photo": "image", "sound": "audio", "title": "text", "price": "number", "brand": "category"}
    assert meta["modalities"]["specs"]["fields"][1]["choices"] == ["a", "b", "c"]
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_predict_json_matches_predictor(client: TestClient, predictor: Predictor, data_dir: Path) -> None:
    frame = table(data_dir, 5)
    response = client.post("/predict", json={"records": as_json(frame, data_dir)})
    assert response.status_code == 200, response.text
    got = response.json()["predictions"]
    proba = predictor.predict_proba(frame, root=data_dir)
    assert [g["prediction"] for g in got] == list(predictor.predict(frame, root=data_dir))
    assert np.allclose([[g["probabilities"][c] for c in "xyz"] for g in got], proba[list("xyz")].to_numpy(), atol=1e-5)


def test_multipart_upload(client: TestClient, predictor: Predictor, data_dir: Path) -> None:
    row = table(data_dir, 1).iloc[0]
    files = {"photo": ("p.png", (data_dir / row.photo).read_bytes(), "image/png"),
             "sound": ("s.wav", (data_dir / row.sound).read_bytes(), "audio/wav")}
    response = client.post("/predict", files=files, data={"title": row.title, "price": str(row.price),
                                                          "brand": row.brand})
    assert response.status_code == 200, response.text
    expected = predictor.predict_proba(table(data_dir, 1), root=data_dir).iloc[0]
    got = response.json()["predictions"][0]["probabilities"]
    assert np.allclose([got[c] for c in "xyz"], expected[list("xyz")].to_numpy(), atol=1e-5)


def test_missing_modalities_take_the_missing_path(client: TestClient, predictor: Predictor, data_dir: Path) -> None:
    frame = table(data_dir, 3)
    records = as_json(frame, data_dir)
    records[0] = {"title": records[0]["title"]}  # absent fields
    records[1].update(photo="", sound=None, price=None, brand="")  # empty and null fields
    response = client.post("/predict", json={"records": records})
    assert response.status_code == 200, response.text
    frame = frame.astype(object)
    frame.loc[0, ["photo", "sound", "price", "brand"]] = None
    frame.loc[1, ["photo", "sound", "price", "brand"]] = None
    expected = predictor.predict_proba(frame, root=data_dir)[list("xyz")].to_numpy()
    got = [[p["probabilities"][c] for c in "xyz"] for p in response.json()["predictions"]]
    assert np.allclose(got, expected, atol=1e-5)


def test_explain_gives_each_modality_contribution(client: TestClient, predictor: Predictor, data_dir: Path) -> None:
    frame = table(data_dir, 2)
    response = client.post("/predict?explain=true", json={"records": as_json(frame, data_dir)})
    assert response.status_code == 200, response.text
    expected = predictor.explain(frame, root=data_dir)
    for got, (_, row) in zip(response.json()["predictions"], expected.iterrows()):
        contributions = got["explanation"]["contributions"]
        assert set(contributions) == set(MODALITIES)
        assert np.isclose(sum(contributions.values()), got["explanation"]["value_full"]
                          - got["explanation"]["value_empty"], atol=1e-5)
        assert np.allclose([contributions[m] for m in MODALITIES], [row[f"shapley_{m}"] for m in MODALITIES],
                           atol=1e-5)


def test_embed(client: TestClient, predictor: Predictor, data_dir: Path) -> None:
    frame = table(data_dir, 3)
    response = client.post("/embed", json={"records": as_json(frame, data_dir)})
    assert response.status_code == 200, response.text
    assert response.json()["dim"] == 16
    assert np.allclose(response.json()["embeddings"], predictor.embed(frame, root=data_dir), atol=1e-5)


def test_report_and_page(client: TestClient) -> None:
    assert "<html" in client.get("/report").text.lower()
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200


def _good(data_dir: Path) -> dict[str, Any]:
    return as_json(table(data_dir, 1), data_dir)[0]


MALFORMED: dict[str, tuple[Callable[[dict[str, Any]], Any], int, str]] = {
    # name: (body from one good record, expected status, text the message must hold)
    "bad base64": (lambda r: {"records": [r, {**r, "photo": "not base64!!"}]}, 400, "record 1, field 'photo'"),
    "bad data url": (lambda r: {"records": [{**r, "sound": "data:audio/wav,plain"}]}, 400, "field 'sound'"),
    "undecodable image": (lambda r: {"records": [{**r, "photo": base64.b64encode(b"no image").decode()}]}, 400,
                          "record 0, field 'photo': cannot decode image"),
    "undecodable audio": (lambda r: {"records": [{**r, "sound": base64.b64encode(b"RIFF junk").decode()}]}, 400,
                          "record 0, field 'sound': cannot decode audio"),
    "image as a number": (lambda r: {"records": [{**r, "photo": 12}]}, 400, "field 'photo': expected a base64"),
    "text not a string": (lambda r: {"records": [{**r, "title": ["a"]}]}, 400, "field 'title': expected a string"),
    "numeric field a word": (lambda r: {"records": [{**r, "price": "cheap"}]}, 400, "field 'price'"),
    "numeric field a list": (lambda r: {"records": [{**r, "price": [1]}]}, 400, "field 'price'"),
    "numeric field a bool": (lambda r: {"records": [{**r, "price": True}]}, 400, "field 'price'"),
    "category a dict": (lambda r: {"records": [{**r, "brand": {"a": 1}}]}, 400, "field 'brand'"),
    "unknown field": (lambda r: {"records": [{**r, "colour": "red"}]}, 400, "record 0, field 'colour': unknown"),
    "record not an object": (lambda r: {"records": [r, "text"]}, 400, "record 1: expected an object"),
    "empty batch": (lambda r: {"records": []}, 400, "no records"),
    "too many records": (lambda r: {"records": [r] * 9}, 413, "limit is 8"),
    "no records key": (lambda r: {"rows": [r]}, 400, "records"),
    "explain not a bool": (lambda r: {"records": [r], "explain": "yes"}, 400, "explain"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_json_gets_4xx_naming_record_and_field(client: TestClient, data_dir: Path, case: str) -> None:
    make, status, text = MALFORMED[case]
    response = client.post("/predict", json=make(_good(data_dir)))
    assert response.status_code == status, response.text
    assert text in response.json()["detail"]


def test_malformed_bodies_get_4xx(client: TestClient, data_dir: Path) -> None:
    bad_json = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["detail"]
    other = client.post("/predict", content=b"a,b", headers={"content-type": "text/csv"})
    assert other.status_code == 415
    big = client.post("/predict", json={"records": [{"title": "x" * 600_000}]})
    assert big.status_code == 413 and "limit" in big.json()["detail"]
    form = client.post("/predict", files={"photo": ("p.png", b"\x89PNG broken", "image/png")})
    assert form.status_code == 400 and "field 'photo'" in form.json()["detail"]
    twice = client.post("/predict", data={"title": ["a", "b"]})
    assert twice.status_code == 400 and "field 'title'" in twice.json()["detail"]


# ---------------------------------------------------------------------------------------- batching and limits


def _gated(app: FastAPI, gate: threading.Event) -> list[int]:
    """Make the app's model wait for `gate` on its first batch; returns the sizes of the batches it runs."""
    batcher: MicroBatcher[Any, Any] = app.state.batcher
    real, sizes = batcher.handler, []

    def handler(works: Sequence[Any]) -> Sequence[Any]:
        sizes.append(sum(w.size for w in works))
        gate.wait(timeout=30)
        return real(works)

    batcher.handler = handler
    return sizes


async def _concurrently(app: FastAPI, bodies: list[dict[str, Any]], gate: threading.Event,
                        ready: Callable[[], bool] | None = None) -> tuple[httpx.Response | None, list[httpx.Response]]:
    """Post every body at once. The model waits for `gate`, opened once `ready()` holds, or else once a first
    response (one that did not need the model) has arrived; returns that first response and all of them."""
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c:
            tasks = [asyncio.create_task(c.post("/predict", json=b)) for b in bodies]
            first = None
            try:
                for _ in range(3000):
                    done = [t for t in tasks if t.done()]
                    if (ready is not None and ready()) or (ready is None and done):
                        first = done[0].result() if done else None
                        break
                    await asyncio.sleep(0.01)
            finally:
                gate.set()
            return first, list(await asyncio.gather(*tasks))


def test_full_queue_gets_503_with_retry_after(run_dir: Path, data_dir: Path) -> None:
    app = create_app(run_dir, ServeSettings(max_batch=1, queue_size=1, max_wait_ms=0))
    gate = threading.Event()
    _gated(app, gate)
    first, responses = asyncio.run(_concurrently(app, [{"records": [_good(data_dir)]}] * 4, gate))
    assert first is not None and first.status_code == 503 and first.headers["retry-after"] == "1" and "busy" in first.json()["detail"]
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and set(codes) == {200, 503}


def test_slow_request_gets_504(run_dir: Path, data_dir: Path) -> None:
    app = create_app(run_dir, ServeSettings(timeout_s=0.2))
    gate = threading.Event()
    _gated(app, gate)
    first, _ = asyncio.run(_concurrently(app, [{"records": [_good(data_dir)]}], gate))
    assert first is not None and first.status_code == 504 and "0.2 s" in first.json()["detail"]


def test_concurrent_requests_share_forward_passes(run_dir: Path, data_dir: Path, predictor: Predictor) -> None:
    app = create_app(run_dir, ServeSettings(max_batch=32, max_wait_ms=0))
    calls: list[int] = []
    app.state.service.run.model.register_forward_hook(lambda m, args, out: calls.append(args[0].size))
    gate = threading.Event()
    sizes = _gated(app, gate)
    records = as_json(table(data_dir, 6), data_dir)
    batcher = app.state.batcher
    _, responses = asyncio.run(_concurrently(app, [{"records": [r]} for r in records], gate,
                                             ready=lambda: len(sizes) == 1 and sizes[0] + batcher.waiting == 6))
    assert all(r.status_code == 200 for r in responses)
    assert len(calls) < 6 and sum(calls) == 6 and calls == sizes  # the queued requests ran as one batch
    expected = predictor.predict(table(data_dir, 6), root=data_dir)
    assert [r.json()["predictions"][0]["prediction"] for r in responses] == list(expected)


def test_micro_batcher_collects_waits_and_splits() -> None:
    calls: list[list[int]] = []

    def handler(payloads: Sequence[int]) -> list[int]:
        calls.append(list(payloads))
        return [p * 10 for p in payloads]

    async def scenario(batcher: MicroBatcher[int, int], sizes: list[int]) -> list[int]:
        try:
            return list(await asyncio.gather(*(batcher.submit(i, s, timeout=10) for i, s in enumerate(sizes))))
        finally:
            await batcher.stop()

    assert asyncio.run(scenario(MicroBatcher(handler, max_batch=4, max_wait_ms=500), [1, 1, 1])) == [0, 10, 20]
    assert calls == [[0, 1, 2]]  # one call for three concurrent payloads
    calls.clear()
    asyncio.run(scenario(MicroBatcher(handler, max_batch=2, max_wait_ms=0), [1, 1, 3, 1]))
    assert calls == [[0, 1], [2], [3]]  # at most max_batch records, an oversized payload alone
    calls.clear()
    asyncio.run(scenario(MicroBatcher(handler, max_batch=1, max_wait_ms=500), [1, 1]))
    assert calls == [[0], [1]]  # batching off


def test_micro_batcher_runs_a_lone_request_without_waiting() -> None:
    async def scenario() -> int:
        batcher: MicroBatcher[int, int] = MicroBatcher(lambda p: [x + 1 for x in p], max_wait_ms=600_000)
        try:
            return await asyncio.wait_for(batcher.submit(1, 1, timeout=600), 30)  # nothing else is on its way
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()) == 2


def test_micro_batcher_waits_for_announced_requests() -> None:
    calls: list[list[int]] = []

    def handler(payloads: Sequence[int]) -> list[int]:
        calls.append(list(payloads))
        return list(payloads)

    async def scenario(batcher: MicroBatcher[int, int]) -> None:
        async def late() -> int:
            with batcher.incoming():  # being decoded: the open batch waits for it
                await asyncio.sleep(0.05)
            return await batcher.submit(1, 1, timeout=30)

        try:
            await asyncio.gather(batcher.submit(0, 1, timeout=30), late())
        finally:
            await batcher.stop()

    asyncio.run(scenario(MicroBatcher(handler, max_batch=4, max_wait_ms=20_000)))
    assert calls == [[0, 1]]


def test_micro_batcher_refuses_when_full() -> None:
    gate = threading.Event()

    async def scenario() -> list[Any]:
        batcher: MicroBatcher[int, int] = MicroBatcher(lambda p: gate.wait(10) and list(p), max_batch=1,
                                                       max_wait_ms=0, queue_size=1)
        tasks = [asyncio.create_task(batcher.submit(i, 1, timeout=10)) for i in range(3)]
        await asyncio.sleep(0.05)
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert sum(isinstance(r, QueueFull) for r in results) >= 1 and 0 in results


# ------------------------------------------------------------------------------------- property-based (OpenAPI)


def test_openapi_fuzz_never_5xx(run_dir: Path) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    app = create_app(run_dir, ServeSettings(max_records=4, max_body_mb=0.2, timeout_s=5, allowed_hosts=("testserver",)))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [schema["/predict"]["POST"], schema["/embed"]["POST"], schema["/metadata"]["GET"]]
    seen: list[int] = []

    @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(*(op.as_strategy() for op in operations)))
    def check(case: Any) -> None:
        response = case.call()
        seen.append(response.status_code)
        assert response.status_code < 500, f"{case.method} {case.path} -> {response.status_code}: {response.text}"

    check()
    assert seen and any(code == 200 for code in seen)


def test_cli_serve_passes_its_options(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import polymodal.serve
    from polymodal.cli import main

    seen: dict[str, Any] = {}
    monkeypatch.setattr(polymodal.serve, "serve", lambda run, host, port, settings: seen.update(
        run=run, host=host, port=port, settings=settings))
    assert main(["serve", str(run_dir), "--port", "8123", "--max-batch", "1", "--max-wait-ms", "2",
                 "--queue-size", "4", "--max-body-mb", "1.5", "--timeout-s", "3", "--max-records", "7",
                 "--backend", "onnx", "--workers", "2"]) == 0
    assert seen["port"] == 8123 and seen["host"] == "127.0.0.1"
    assert seen["settings"] == ServeSettings(max_batch=1, max_wait_ms=2, queue_size=4, max_records=7,
                                             max_body_mb=1.5, timeout_s=3, device="cpu", backend="onnx", workers=2)


def test_predict_returns_no_embedding_and_embed_no_prediction(run_dir: Path, data_dir: Path,
                                                               predictor: Predictor) -> None:
    app = create_app(run_dir)
    records = as_json(table(data_dir, 3), data_dir)
    with TestClient(app, base_url="http://localhost") as c:
        predicted = c.post("/predict", json={"records": records}).json()["predictions"]
        embedded = c.post("/embed", json={"records": records}).json()["embeddings"]
    assert all(set(p) - {"reliability"} == {"prediction", "probabilities"} for p in predicted)
    assert np.allclose(embedded, predictor.embed(table(data_dir, 3), root=data_dir), atol=1e-5)


def test_onnx_backend_answers_like_torch(run_dir: Path, data_dir: Path, predictor: Predictor,
                                         tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    app = create_app(run, ServeSettings(backend="onnx"))
    assert (run / "export_onnx" / "export.json").is_file()  # exported at start
    records = as_json(table(data_dir, 5), data_dir)
    with TestClient(app, base_url="http://localhost") as c:
        predicted = c.post("/predict", json={"records": records}).json()["predictions"]
        embedded = c.post("/embed", json={"records": records}).json()["embeddings"]
    expected = predictor.predict_proba(table(data_dir, 5), root=data_dir)
    assert [p["prediction"] for p in predicted] == list(predictor.predict(table(data_dir, 5), root=data_dir))
    assert np.allclose([list(p["probabilities"].values()) for p in predicted], expected.to_numpy(), atol=1e-4)
    assert np.allclose(embedded, predictor.embed(table(data_dir, 5), root=data_dir), atol=1e-4)


def test_worker_processes_build_the_same_app(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from polymodal.serve.workers import ENV, prepare_workers, worker_app

    monkeypatch.delenv(ENV, raising=False)
    prepare_workers(run_dir, ServeSettings(workers=3, max_records=5))
    app = worker_app()
    assert app.state.settings == ServeSettings(workers=3, max_records=5)
    assert app.state.service.run.path.resolve() == run_dir.resolve()
