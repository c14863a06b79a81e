"""The dashboard in a real headless Chromium (Debian's `chromium`; skipped where it is not
installed): served by the real router over a read model in memory, it fetches the summary and
the series, shows the numbers, renders a tag full of markup as plain text, and leaves a
screenshot for a person to look at."""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import uvicorn

from services.analytics import api
from shared.http import create_http_app
from tests.unit.test_analytics_domain import T0, Story, minutes, sla
from tests.unit.test_analytics_readmodel import a_morning, new_service, play

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: chromium)")
HOSTILE_TAG = "<img src=x onerror=document.title='pwned'>"


def busier_morning() -> list:
    """The morning of the other tests, plus enough chat, email and WhatsApp to draw bars."""
    events = a_morning()
    for i in range(14):
        channel = ("chat", "email", "whatsapp", "chat", "sms")[i % 5]
        at = T0 - minutes(40 * i)
        story = Story(f"TK-{i:02}", channel=channel, at=at, tags=(("orders", "refund", "late-delivery")[i % 3],))
        story.assign(("layla", "omar", "sara")[i % 3], at + minutes(1))
        if i % 4:
            story.reply(("layla", "omar", "sara")[i % 3], at + minutes(3 + 7 * (i % 5)))
        if i % 3 == 0:
            story.status("resolved", at + minutes(50 + 10 * i))
        events += story.events
        events.append(sla("met" if i % 5 else "breached", story.id, policy="chat-fast", at=at + minutes(5)))
    events += Story("TK-EVIL", tags=(HOSTILE_TAG,)).events
    return events


@pytest.fixture(scope="module")
def dashboard_url():
    service = new_service()
    asyncio.run(play(service, busier_morning()))
    runtime = SimpleNamespace(settings=SimpleNamespace(api_token=None))
    app = create_http_app(runtime, title="analytics", description="test", routers=[api.build_router(service)])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # lifespan off: the app's runtime would connect to Kafka and MongoDB
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/dashboard"
    server.should_exit = True
    thread.join(timeout=10)


def chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--hide-scrollbars",
             "--virtual-time-budget=8000", *args],
            capture_output=True, timeout=120, text=True)


def test_the_dashboard_shows_the_numbers_and_only_text_from_the_data(dashboard_url):
    done = chromium("--dump-dom", dashboard_url)
    dom = done.stdout
    assert "<main" in dom, done.stderr[-2000:]
    assert 'id="kpi-total">18<' in dom  # 3 + 14 + the hostile one
    assert "live · numbers as of" in dom
    assert ">layla<" in dom and ">omar<" in dom and ">sara<" in dom  # the agent table
    assert ">orders<" in dom and ">late-delivery<" in dom  # recurring problems
    assert dom.count("<rect") >= 10  # the volume bars were drawn
    assert "<path" in dom  # and the response-time line
    # the tag arrived as text: escaped in the DOM, never an element, and its script never ran
    assert "&lt;img src=x onerror=" in dom and "<img" not in dom
    assert "pwned" not in dom.split("<title>")[1].split("</title>")[0]


def test_a_screenshot_of_the_dashboard_is_a_full_page(dashboard_url):
    out = Path(os.environ.get("DASHBOARD_SCREENSHOT", Path(tempfile.gettempdir()) / "deskstream-dashboard.png"))
    done = chromium(f"--screenshot={out}", "--window-size=1400,1900", dashboard_url)
    assert out.exists(), done.stderr[-2000:]
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 60_000  # a blank or error page compresses to a few kilobytes
