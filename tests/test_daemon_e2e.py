"""End to end: ``kiosk run`` with the sandbox API, a replay camera of a student walking past, mock GPIO.

The teacher logs in through the JSON API, enrols a roster student from photos, starts the class; the
camera recognises the student and the mark reaches the (sandbox) university API. The kiosk's output
never names the student.
"""

from __future__ import annotations

import contextlib

import cv2
import numpy as np
import pytest
import requests

from kiosk.datasets import orl_padded_rgb
from kiosk.errors import EnrollmentRefused
from kiosk.wiut.sandbox import SandboxServer
from tests.fixtures.sandbox import DEMO_CLASS_ID, DEMO_LOGIN, DEMO_MODULE_ID
from tests.test_daemon import Daemon
from tests.test_pipeline import wait_until
from tests.test_pipeline_faces import walk_past

pytestmark = pytest.mark.slow
STUDENT = "00019880"  # on class 46703's roster, no camera mark yet (confidence 0)
LESSON = "24133299-0748-45d9-b68e-ceb3f859a954"


def png(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def usable_photos(engine, shots) -> list[bytes]:
    """PNG photos of the shots the engine accepts for enrolment (some ORL shots look away)."""
    photos = []
    for img in shots:
        with contextlib.suppress(EnrollmentRefused):
            engine.embed_photo(orl_padded_rgb(img))
            photos.append(png(orl_padded_rgb(img)))
    return photos


def test_a_student_walking_past_is_marked_in_the_university_api(tmp_path, engine, orl, face_settings):
    replay = tmp_path / "replay"
    replay.mkdir()
    frames = walk_past(orl["s1"][5:], frames=14) + [np.full((480, 640, 3), 118, np.uint8)] * 6
    for index, frame in enumerate(frames):
        (replay / f"{index:03d}.png").write_bytes(png(frame))
    photos = usable_photos(engine, orl["s1"][:5])
    with SandboxServer() as api:
        before = {user: mark.confidence for user, mark in api.state.attendance(DEMO_CLASS_ID).items()}
        daemon = Daemon(tmp_path, api.url, KIOSK_REPLAY_FPS="5", KIOSK_MODELS_DIR=face_settings.models_dir)
        try:
            assert daemon.messages_until("READY=1")
            base = f"http://127.0.0.1:{daemon.port}"
            with requests.Session() as page:
                login = page.post(f"{base}/api/login", json=dict(zip(("username", "password"), DEMO_LOGIN,
                                                                       strict=True)), timeout=30)
                assert login.status_code == 200, login.text
                page.headers["X-CSRF-Token"] = login.json()["csrfToken"]
                enrolled = page.post(f"{base}/api/enroll", data={"userId": STUDENT},
                                     files=[("image", (f"{i}.png", p, "image/png")) for i, p in enumerate(photos)],
                                     timeout=120)
                assert enrolled.status_code == 201, enrolled.text
                started = page.post(f"{base}/api/session", json={"lessonGuid": LESSON, "classId": DEMO_CLASS_ID,
                                                                 "moduleId": DEMO_MODULE_ID, "teachingType": 1},
                                    timeout=60)
                assert started.status_code == 201, started.text
                assert wait_until(lambda: api.state.attendance(DEMO_CLASS_ID)[STUDENT].confidence > 50, 90), \
                    page.get(f"{base}/api/status", timeout=10).text
                status = page.get(f"{base}/api/status", timeout=10).json()
                assert page.delete(f"{base}/api/session", timeout=60).status_code in (200, 204)
        finally:
            code = daemon.stop()
        after = {user: mark.confidence for user, mark in api.state.attendance(DEMO_CLASS_ID).items()}
    assert code == 0
    assert 50 < after[STUDENT] <= 100
    assert {u: c for u, c in after.items() if u != STUDENT} == {u: c for u, c in before.items() if u != STUDENT}
    assert status["camera"]["error"] is None
    output = "".join(daemon.output)
    assert STUDENT not in output and "Aziza" not in output and DEMO_LOGIN[1] not in output
