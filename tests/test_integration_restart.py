"""What survives a restart of ``kiosk run`` (a real subprocess, stopped with SIGTERM): marks the API could
not take within the 5 s flush go to the spool, and the next run delivers them, once each, when that
teacher logs in again; then the spool is gone. The output names no student and shows no secret."""

from __future__ import annotations

import json

import pytest
import requests

from kiosk.spool import SPOOL_NAME
from kiosk.wiut.sandbox import SandboxServer
from tests.fixtures.sandbox import DEMO_CLASS_ID, DEMO_LOGIN, DEMO_MODULE_ID, DEMO_SLOT_GUID
from tests.helpers import wait_for
from tests.test_daemon import Daemon
from tests.test_integration_class import CountingState

pytestmark = pytest.mark.slow
MARKS = {"00019880": True, "00019887": False}  # by hand: present (105), absent (-1)


def page(daemon: Daemon) -> tuple[requests.Session, str]:
    """A logged-in page session (CSRF header set) and the kiosk's base URL."""
    base = f"http://127.0.0.1:{daemon.port}"
    http = requests.Session()
    login = http.post(f"{base}/api/login", json=dict(zip(("username", "password"), DEMO_LOGIN, strict=True)),
                      timeout=30)
    assert login.status_code == 200, login.text
    http.headers["X-CSRF-Token"] = login.json()["csrfToken"]
    return http, base


def test_marks_spooled_at_sigterm_are_delivered_after_a_restart_when_the_teacher_logs_in(tmp_path, face_settings):
    state = CountingState()
    spool_file = tmp_path / "state" / SPOOL_NAME
    extra = {"KIOSK_UNDO_SECONDS": "0", "KIOSK_API_TIMEOUT": "2", "KIOSK_MODELS_DIR": face_settings.models_dir}
    with SandboxServer(state) as api:
        first = Daemon(tmp_path, api.url, **extra)
        try:
            assert first.messages_until("READY=1")
            http, base = page(first)
            started = http.post(f"{base}/api/session", timeout=60,
                                json={"lessonGuid": DEMO_SLOT_GUID, "classId": DEMO_CLASS_ID,
                                      "moduleId": DEMO_MODULE_ID, "teachingType": 1})
            assert started.status_code == 201, started.text
            # the replay folder is empty: the class runs without a camera, and the status says why
            wait_for(lambda: http.get(f"{base}/api/status", timeout=10).json()["camera"]["error"], 30,
                       "the camera's trouble on the status")
            state.set_knobs(unavailable_for=600)               # the API goes down mid-class
            for user_id, present in MARKS.items():
                answer = http.post(f"{base}/api/session/marks", json={"userId": user_id, "present": present},
                                   timeout=30)
                assert answer.status_code in (200, 202), answer.text
            wait_for(lambda: state.count("SetAttendanceStudent") > 0, 30, "a delivery attempt")
        finally:
            assert first.stop() == 0
        spooled = json.loads(spool_file.read_text())
        assert {(m["userId"], m["confidence"]) for m in spooled["marks"]} == {("00019880", 105), ("00019887", -1)}
        assert state.stored == {}
        spool_text = spool_file.read_text()
        assert DEMO_LOGIN[1] not in spool_text and "Token" not in spool_text and "fullName" not in spool_text

        state.set_knobs(unavailable_until=0.0)                # the API is back; the kiosk restarts
        second = Daemon(tmp_path, api.url, **extra)
        try:
            assert second.messages_until("READY=1")
            assert second.wait_for_line("2 undelivered mark(s) from the last run wait for their teacher")
            assert state.stored == {}                          # nobody's tokens to send them with yet
            page(second)                                       # the teacher logs in again
            wait_for(lambda: len(state.stored) == 2, 30, "the spooled marks in the API")
            wait_for(lambda: not spool_file.exists(), 10, "the spool removed")
        finally:
            assert second.stop() == 0
    assert dict(state.stored) == {"00019880": [105], "00019887": [-1]}
    output = "".join(first.output + second.output)
    assert "go to the spool" in output and "stopped." in output
    assert "kiosk: Outbox: delivery failed (UpstreamUnavailable)" in output  # log records reach stdout
    assert "kiosk: Outbox: 2 undelivered mark(s) kept in the spool." in output
    assert "Traceback" not in output
    for secret in (*MARKS, "Aziza", "Bekzod", DEMO_LOGIN[1]):
        assert secret not in output, output
