"""Load on the page from a second process on loopback (tests/reliability/loadgen.py): live streams up to the
cap and one over it (a clear 503 at once, not a hang), then ``LOAD_RATE`` (default 20) API calls a second for
``LOAD_SECONDS`` (default 60) while a class runs on the looping demo replay. p99 latency under 500 ms;
recognition frames per second reported. Figures go to ``<results>/load.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kiosk import demo_data
from kiosk.wiut.sandbox import SandboxServer
from tests.reliability.harness import KioskUnderTest, Page, kiosk_settings, record, wait_until

pytestmark = pytest.mark.load
LOAD_SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))
LOAD_RATE = float(os.environ.get("LOAD_RATE", "20"))
REPO = Path(__file__).resolve().parents[2]


def test_streams_to_the_cap_and_twenty_calls_a_second_during_a_class(world, face_settings, engine, tmp_path):
    with SandboxServer(world.state) as api:
        settings = kiosk_settings(face_settings, api.url, tmp_path, replay_loop=True)
        with KioskUnderTest(settings, engine) as kiosk, Page(kiosk.url) as page:
            assert page.login().status_code == 200
            assert page.start(world.demo).status_code == 201
            assert wait_until(lambda: kiosk.pipeline.stats()["frames"] > 30, 30)
            before, t0 = kiosk.pipeline.stats()["frames"], time.monotonic()
            job = {"url": kiosk.url, "username": demo_data.DEMO_USERNAME, "password": demo_data.DEMO_PASSWORD,
                   "seconds": LOAD_SECONDS, "rate": LOAD_RATE, "streams": settings.sse_max_streams}
            done = subprocess.run([sys.executable, "-m", "tests.reliability.loadgen"], input=json.dumps(job),
                                  capture_output=True, text=True, cwd=REPO, timeout=LOAD_SECONDS + 180)
            assert done.returncode == 0, done.stderr[-2000:]
            frames, seconds = kiosk.pipeline.stats()["frames"] - before, time.monotonic() - t0
            result = json.loads(done.stdout)
            streams_after = page.call("GET", "/api/status").status_code
            delivered = world.delivered(world.demo.class_id)
            assert page.end().status_code == 200
            alive = kiosk.alive()
    api_figures = result["api"]
    over = result["over_cap"]
    record("load", "page under load during a class", {
        "sse_cap": settings.sse_max_streams, "streams_open": result["streams_open"],
        "stream_events": result["stream_events"], "over_cap_status": over["status"],
        "over_cap_seconds": over["seconds"], "over_cap_body": over["body"][:200], **api_figures,
        "recognition_fps": round(frames / seconds, 2), "marks_delivered": len(delivered),
        "marks_expected": len(world.demo.expected_present), "kiosk_alive": alive, "web_threads": settings.web_threads})
    assert result["streams_open"] == settings.sse_max_streams
    assert over["status"] == 503 and "Too many live pages" in over["body"] and over["seconds"] < 5
    assert api_figures["calls"] >= 0.95 * LOAD_SECONDS * LOAD_RATE
    assert set(api_figures["statuses"]) == {"200"}, api_figures["statuses"]
    assert api_figures["p99_ms"] < 500, api_figures
    assert min(result["stream_events"]) >= 1 and streams_after == 200 and alive
    assert delivered == set(world.demo.expected_present)
