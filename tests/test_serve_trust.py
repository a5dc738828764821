"""The server against hostile requests: decompression bombs, malformed JSON, non-finite outputs, other sites."""

from __future__ import annotations

import asyncio
import base64
import io
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from conftest import make_config
from fastapi.testclient import TestClient
from PIL import Image

from polymodal.config import parse_config
from polymodal.processors.audio import AudioProcessor
from polymodal.processors.image import ImageProcessor
from polymodal.serve import ServeSettings, create_app
from polymodal.training.fit import train

URL = "http://localhost"


@pytest.fixture(scope="module")
def run_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serve_trust") / "run"
    train(parse_config(make_config(data_dir, out, ["photo", "sound", "title", "specs"], epochs=1)))
    return out


@pytest.fixture(scope="module")
def client(run_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(run_dir), base_url=URL) as c:
        yield c


@pytest.fixture(scope="module")
def png_bomb() -> str:
    """A ~140 KB PNG declaring 12000 x 12000 pixels (432 MB once converted to RGB)."""
    buf = io.BytesIO()
    Image.new("L", (12000, 12000)).save(buf, format="PNG", optimize=True)
    assert len(buf.getvalue()) < 200_000
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture()
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each image or audio decode the processors start."""
    calls: list[str] = []
    for cls in (ImageProcessor, AudioProcessor):
        real = cls.decode_raw
        monkeypatch.setattr(cls, "decode_raw", lambda self, v, r, real=real: calls.append(self.kind) or real(self, v, r))
    return calls


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def wav(samples: np.ndarray, rate: int, subtype: str = "PCM_16", fmt: str = "WAV") -> str:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return b64(buf.getvalue())


# ------------------------------------------------------------------------------------------ 14: decoding limits


def test_image_bomb_is_refused_from_its_header(client: TestClient, png_bomb: str, decoded: list[str]) -> None:
    response = client.post("/predict", json={"records": [{"title": "a", "photo": png_bomb}]})
    assert response.status_code == 413, response.text
    assert "record 0, field 'photo': image of 12000x12000" in response.json()["detail"]
    assert "--max-image-pixels" in response.json()["detail"]
    assert decoded == []  # refused before any decoding


def test_audio_bombs_are_refused_from_their_header(client: TestClient, decoded: list[str]) -> None:
    flac = wav(np.zeros(8000 * 120, np.int16), 8000, "PCM_16", "FLAC")  # two minutes: the limit is 60 s
    long = client.post("/predict", json={"records": [{"sound": flac}]})
    assert long.status_code == 413 and "audio of 120.0 s exceeds" in long.json()["detail"], long.text
    prime = client.post("/predict", json={"records": [{"sound": wav(np.zeros(100, np.int16), 999983)}]})
    assert prime.status_code == 422 and "999983 Hz" in prime.json()["detail"], prime.text
    unknown = bytearray(base64.b64decode(flac))
    unknown[21] &= 0xF0  # FLAC STREAMINFO: total samples 0 = unknown length
    unknown[22:26] = bytes(4)
    no_length = client.post("/predict", json={"records": [{"sound": b64(bytes(unknown))}]})
    assert no_length.status_code == 413 and "does not declare its length" in no_length.json()["detail"]
    channels = client.post("/predict", json={"records": [{"sound": wav(np.zeros((100, 12), np.int16), 8000)}]})
    assert channels.status_code == 422 and "12 channels" in channels.json()["detail"], channels.text
    assert decoded == []


def test_limits_are_settings_listed_in_metadata(run_dir: Path, client: TestClient) -> None:
    limits = client.get("/metadata").json()["limits"]
    assert limits["max_image_pixels"] == 4096 * 3072 and limits["max_audio_seconds"] == 60
    assert limits["max_sample_rate"] == 192000 and limits["api_key_required"] is False and "api_key" not in limits
    small = create_app(run_dir, ServeSettings(max_image_pixels=100, max_audio_seconds=0.1))
    with TestClient(small, base_url=URL) as c:
        assert c.get("/metadata").json()["limits"]["max_image_pixels"] == 100
        image = io.BytesIO()
        Image.new("L", (11, 11)).save(image, format="PNG")
        record = {"photo": b64(image.getvalue()), "sound": wav(np.zeros(2400, np.int16), 8000)}
        response = c.post("/predict", json={"records": [record]})
        assert response.status_code == 413
        assert [e["field"] for e in response.json()["errors"]] == ["photo", "sound"]


def test_video_limits_from_the_container(tmp_path: Path) -> None:
    pytest.importorskip("av")
    from polymodal.datasets.video_digits import write_clip
    from polymodal.serve.limits import DecodeLimits, LimitError, video_cost

    path = tmp_path / "clip.mp4"
    write_clip(path, np.zeros((16, 32, 32), np.uint8), 16, None, 8000)
    assert video_cost(path.read_bytes(), DecodeLimits(4096, 60, 192000, 8, 16, 1024), 32) > 0
    with pytest.raises(LimitError, match="video of 16 frames exceeds the limit of 10"):
        video_cost(path.read_bytes(), DecodeLimits(4096, 60, 192000, 8, 10, 1024), 32)
    with pytest.raises(LimitError, match="video frame of 32x32"):
        video_cost(path.read_bytes(), DecodeLimits(1000, 60, 192000, 8, 16, 1024), 32)


def test_timeout_covers_decoding(run_dir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = ImageProcessor.decode_raw
    monkeypatch.setattr(ImageProcessor, "decode_raw", lambda self, v, r: time.sleep(1.5) or real(self, v, r))
    with TestClient(create_app(run_dir, ServeSettings(timeout_s=0.3)), base_url=URL) as c:
        photo = b64((data_dir / "img" / "0.png").read_bytes())
        response = c.post("/predict", json={"records": [{"photo": photo}]})
    assert response.status_code == 504, response.text


def test_decode_budget_bounds_concurrent_decoding() -> None:
    from polymodal.serve.limits import DecodeBudget

    active, peak, lock = [0], [0], threading.Lock()

    def work(cost: int) -> int:
        cost = min(cost, 100)  # a job above the budget takes all of it
        with lock:
            active[0] += cost
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= cost
        return cost

    async def scenario() -> list[int]:
        budget = DecodeBudget(100)
        results = await asyncio.gather(*(budget.run(c, work, c) for c in [60, 60, 30, 30, 50, 500]))
        assert budget.used == 0
        return list(results)

    assert asyncio.run(scenario()) == [60, 60, 30, 30, 50, 100]
    assert peak[0] <= 100  # never more than the budget at once


def _vm_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def test_hostile_requests_get_4xx_in_bounded_memory(client: TestClient, png_bomb: str, decoded: list[str]) -> None:
    flac = wav(np.zeros(8000 * 3600, np.int16), 8000, "PCM_16", "FLAC")  # one hour
    bodies = [
        {"records": [{"photo": png_bomb}]},
        {"records": [{"photo": png_bomb}] * 20},
        {"records": [{"sound": flac}]},
        {"records": [{"sound": wav(np.zeros(1000, np.int16), 999983)}]},
    ]
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak resident size (VmHWM)
    except OSError:
        pytest.skip("cannot reset the peak resident size here")
    before = _vm_kb("VmRSS")

    async def hostile() -> list[int]:
        import httpx

        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url=URL) as c:
            many = [c.post("/predict", json=b) for b in bodies for _ in range(4)]  # 16 at once
            return [r.status_code for r in await asyncio.gather(*many)]

    codes = asyncio.run(hostile())
    grown_mb = (_vm_kb("VmHWM") - before) / 1024
    assert set(codes) <= {413, 422} and decoded == []
    assert grown_mb < 150, f"peak memory grew by {grown_mb:.0f} MB"  # each PNG bomb alone decodes into 144 MB+


# ------------------------------------------------------------------------------------------ 15: never a 500


def test_malformed_json_is_4xx_never_500(client: TestClient) -> None:
    def post(body: bytes) -> Any:
        return client.post("/predict", content=body, headers={"content-type": "application/json"})

    deep = post(b'{"records": [' + b"[" * 5000 + b"]" * 5000 + b"]}")
    assert deep.status_code == 400 and "JSON" in deep.json()["detail"], deep.text
    surrogate = post(b'{"records": [{"\\udc80": 1}]}')
    assert surrogate.status_code == 400, surrogate.text
    assert surrogate.json()["errors"][0]["field"] == "\\udc80" and "unknown field" in surrogate.json()["detail"]
    digits = post(b'{"records": [{"price": ' + b"9" * 100_000 + b"}]}")
    assert digits.status_code == 400 and "not valid JSON" in digits.json()["detail"], digits.text


def test_huge_float_audio_is_refused_not_null(client: TestClient) -> None:
    record = {"sound": wav(np.full(2400, 1e30, np.float32), 8000, "FLOAT"), "title": "a"}
    response = client.post("/predict", json={"records": [record]})
    assert response.status_code == 400, response.text
    assert "record 0, field 'sound'" in response.json()["detail"] and "non-finite" in response.json()["detail"]


def test_non_finite_model_output_is_an_error(run_dir: Path) -> None:
    app = create_app(run_dir)
    real = app.state.batcher.handler

    def poisoned(works: Any) -> Any:
        results = real(works)
        probabilities = results[0][1]["probabilities"]  # /predict returns no embedding: poison a probability
        probabilities[next(iter(probabilities))] = float("nan")
        return results

    app.state.batcher.handler = poisoned
    with TestClient(app, base_url=URL) as c:
        response = c.post("/predict", json={"records": [{"title": "a"}, {"title": "b"}]})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["record"] == 1 and "not finite" in response.json()["detail"]


# ------------------------------------------------------------------------------------------ 16: who may connect


def test_host_and_origin_checks(client: TestClient) -> None:
    body = {"records": [{"title": "a"}]}
    assert client.post("/predict", json=body, headers={"host": "localhost:8000"}).status_code == 200
    rebinding = client.post("/predict", json=body, headers={"host": "attacker.example:8000"})
    assert rebinding.status_code == 400 and "--allowed-hosts" in rebinding.json()["detail"]
    assert client.get("/metadata", headers={"host": "attacker.example"}).status_code == 400
    form = client.post("/predict", data={"title": "a"}, headers={"origin": "http://attacker.example"})
    assert form.status_code == 403 and "cross-site" in form.json()["detail"]
    fetch_site = client.post("/predict", data={"title": "a"}, headers={"sec-fetch-site": "cross-site"})
    assert fetch_site.status_code == 403
    same = client.post("/predict", data={"title": "a"}, headers={"origin": "http://localhost:8000",
                                                                 "host": "localhost:8000"})
    assert same.status_code == 200, same.text


def test_allowed_hosts_setting(run_dir: Path) -> None:
    app = create_app(run_dir, ServeSettings(allowed_hosts=("models.internal",)))
    with TestClient(app, base_url="http://models.internal") as c:
        assert c.get("/metadata").status_code == 200
        assert c.get("/metadata", headers={"host": "localhost"}).status_code == 400


def test_api_key(run_dir: Path) -> None:
    with TestClient(create_app(run_dir, ServeSettings(api_key="s3cret")), base_url=URL) as c:
        body = {"records": [{"title": "a"}]}
        missing = c.post("/predict", json=body)
        assert missing.status_code == 401 and "API key" in missing.json()["detail"]
        assert c.post("/predict", json=body, headers={"authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/predict", json=body, headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert c.post("/embed", json=body, headers={"x-api-key": "s3cret"}).status_code == 200
        assert c.get("/metadata").status_code == 401 and c.get("/health").status_code == 200
        assert c.get("/metadata", headers={"x-api-key": "s3cret"}).json()["limits"]["api_key_required"] is True


def test_non_loopback_binding_needs_an_api_key(run_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="--api-key"):
        create_app(run_dir, ServeSettings(host="0.0.0.0"))
    from polymodal.cli import main

    monkeypatch.setattr("uvicorn.run", lambda *a, **k: None)
    monkeypatch.delenv("POLYMODAL_API_KEY", raising=False)
    assert main(["serve", str(run_dir), "--host", "0.0.0.0"]) == 2
    assert "POLYMODAL_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("POLYMODAL_API_KEY", "from-env")
    assert main(["serve", str(run_dir), "--host", "0.0.0.0"]) == 0


def test_report_404_does_not_show_the_run_path(run_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare)
    (bare / "report.html").unlink()
    with TestClient(create_app(bare), base_url=URL) as c:
        response = c.get("/report")
    assert response.status_code == 404 and str(tmp_path) not in response.text and "polymodal report" in response.text
