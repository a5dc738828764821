"""The web page of `polymodal serve`, driven in headless Chromium against a real uvicorn server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import make_config

from polymodal.factory import parse_config
from polymodal.predictor import Predictor
from polymodal.serve import create_app
from polymodal.training.fit import train

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Chromium at /usr/bin/chromium for Playwright")


@pytest.fixture(scope="module")
def run_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serve_page") / "run"
    train(parse_config(make_config(data_dir, out, ["photo", "sound", "title", "specs"], epochs=2)))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(run_dir: Path) -> Iterator[str]:
    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(run_dir), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 30 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


def test_page_predicts_like_the_predictor(browser: Any, server: str, run_dir: Path, data_dir: Path,
                                          tmp_path: Path) -> None:
    from playwright.sync_api import expect

    row = pd.read_parquet(data_dir / "data.parquet").iloc[4]
    text = "green pear number 2"
    record = [{"photo": row.photo, "sound": None, "title": text, "price": None, "brand": None}]
    predictor = Predictor.load(run_dir)
    expected = predictor.predict(record, root=data_dir)[0]
    proba = predictor.predict_proba(record, root=data_dir).iloc[0]
    page = browser.new_page()
    try:
        page.goto(server + "/")
        page.wait_for_selector("body[data-ready=true]", timeout=15_000)
        assert page.locator("fieldset").count() == 4
        page.set_input_files("#field-photo", str(data_dir / row.photo))
        page.fill("#field-title", text)
        page.click("#submit")
        expect(page.locator("#result")).to_be_visible(timeout=15_000)
        assert page.inner_text("#prediction") == expected
        bars = page.locator("#probabilities .bar-row")
        assert bars.count() == 3 and bars.first.get_attribute("data-label") == expected
        shown = {bars.nth(i).get_attribute("data-label"): bars.nth(i).locator(".value").inner_text() for i in range(3)}
        assert shown == {c: f"{proba[c]:.3f}" for c in "xyz"}
        assert page.locator("#contributions svg rect[data-modality]").count() == 4
        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 1000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        page.click("#tab-report")
        frame = page.frame_locator("#report-frame")
        expect(frame.locator("h1").first).to_be_visible(timeout=15_000)
        assert page.locator("#panel-predict").is_hidden()
    finally:
        page.close()


def test_page_shows_the_servers_error(browser: Any, server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    page = browser.new_page()
    try:
        page.goto(server + "/")
        page.wait_for_selector("body[data-ready=true]", timeout=15_000)
        page.set_input_files("#field-photo", str(bad))
        page.click("#submit")
        expect(page.locator("#error")).to_be_visible(timeout=15_000)
        assert "field 'photo'" in page.inner_text("#error")
    finally:
        page.close()
