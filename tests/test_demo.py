"""`kiosk demo` end to end: sandbox API, real enrolment, replay camera, real engine, the page's JSON API."""

import os
import subprocess
import sys
import time
from datetime import datetime

import pytest
import requests

from kiosk import demo_data
from kiosk.config import load_settings
from tests.helpers import free_port

pytestmark = pytest.mark.slow


def test_demo_data_has_a_class_running_now():
    settings = load_settings(env={})
    now = datetime(2026, 12, 6, 0, 5, tzinfo=settings.tz)  # just after midnight: slot must stay in the day
    state, demo = demo_data.build_state(now)
    slots = state.lessons(demo.module_id, demo.teaching_type)["slots"]
    running = next(s for s in slots if s["guidID"] == demo.lesson_guid)
    assert running["dayOfWeek"] == "Sunday"
    start, end = running["time"].split(" - ")
    assert start <= "00:05" < end
    assert len(demo.roster) == 30
    assert set(demo.expected_present) <= set(demo.roster)
    assert {demo_data.user_id_of(p) for p in demo_data.NOT_ENROLLED}.isdisjoint(demo.expected_present)


def test_demo_marks_the_walkers_and_nobody_else(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")}
    env["KIOSK_STATE_DIR"] = str(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "kiosk", "demo", "--port", str(port), "--auto-start",
                             "--exit-after", "90"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    expected: set[str] = set()
    try:
        settings = load_settings(env={})
        _, demo = demo_data.build_state(datetime.now(settings.tz))
        expected = set(demo.expected_present)
        http = requests.Session()
        deadline = time.monotonic() + 80
        present: set[str] = set()
        students: list[dict] = []
        while time.monotonic() < deadline:
            time.sleep(2)
            try:
                me = http.get(f"{url}/api/me", timeout=5)
                if me.status_code == 401:
                    http.post(f"{url}/api/login", json={"username": demo_data.DEMO_USERNAME,
                                                        "password": demo_data.DEMO_PASSWORD}, timeout=30)
                    continue
                session = http.get(f"{url}/api/session", timeout=5)
            except requests.RequestException:
                continue
            if session.status_code != 200:
                continue
            students = session.json()["students"]
            present = {s["userId"] for s in students if s["present"] and s["source"] == "camera"}
            if present >= expected:
                time.sleep(4)  # the replay's last walkers: give a wrong mark time to show up
                students = http.get(f"{url}/api/session", timeout=5).json()["students"]
                present = {s["userId"] for s in students if s["present"] and s["source"] == "camera"}
                break
        assert present == expected, f"camera marks {sorted(present)} != expected {sorted(expected)}"
        for student in students:
            if student["userId"] in expected:
                assert 50 < student["confidence"] <= 100
        not_enrolled = {s["userId"] for s in students if not s["enrolled"]}
        assert not_enrolled == {demo_data.user_id_of(p) for p in demo_data.NOT_ENROLLED}
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "demo.teacher" in output and "demo-password" in output  # the printed demo login
    for user_id in expected:
        assert user_id not in output  # no student IDs on stdout
