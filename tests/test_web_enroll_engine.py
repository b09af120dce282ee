"""Enrolment through the page API with the real recognition engine (BlazeFace + MobileFaceNet) on real faces."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from kiosk.datasets import orl_padded_rgb
from kiosk.model.embedding_format import decode
from tests.test_web_api import (  # noqa: F401 (fixtures)
    METHOD,
    app,
    clock,
    kiosk,
    log_in,
    settings,
    web,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def kiosk_engine(engine):
    return engine


def jpeg(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def upload(web, token, *photos):  # noqa: F811
    files = [(io.BytesIO(p), f"photo{i}.jpg") for i, p in enumerate(photos)]
    return web.post("/api/enroll", headers={"X-CSRF-Token": token}, data={"userId": "00019880", "image": files})


def test_a_real_face_is_enrolled_and_stored_in_the_university(web, sandbox, orl):  # noqa: F811
    token = log_in(web)
    face = cv2.resize(orl_padded_rgb(orl["s1"][0]), None, fx=2, fy=2)
    response = upload(web, token, jpeg(face))
    assert response.status_code == 201, response.get_json()
    vectors = decode(sandbox.state.embedding("00019880", METHOD), method=METHOD, dim=192)
    assert vectors.shape == (1, 192)


def test_a_photo_of_several_people_or_of_nobody_is_refused_with_the_reason(web, sandbox, group_photo):  # noqa: F811
    token = log_in(web)
    group = upload(web, token, jpeg(group_photo))
    assert group.status_code == 422
    assert "faces" in group.get_json()["photos"][0]["reason"]
    empty = upload(web, token, jpeg(np.full((480, 640, 3), 128, np.uint8)))
    assert empty.status_code == 422
    assert "face" in empty.get_json()["error"]
    assert not sandbox.state.embedding("00019880", METHOD)


# --- enrolment from the kiosk's own camera (POST /api/enroll/capture) --------------------------------
class Door:
    """The kiosk's camera in these tests: a replay folder the test fills with frames (RGB uint8)."""

    def __init__(self, folder):
        self.folder = folder

    def show(self, frames: list[np.ndarray]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            cv2.imwrite(str(self.folder / f"{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


def scene(*faces: np.ndarray) -> np.ndarray:
    """A 640x480 doorway with ``faces`` (grey ORL crops) side by side, each about 150 px wide."""
    frame = np.full((480, 640, 3), 140, np.uint8)
    for n, face in enumerate(faces):
        rgb = orl_padded_rgb(face, pad=12)
        rgb = cv2.resize(rgb, None, fx=150 / rgb.shape[1], fy=150 / rgb.shape[1], interpolation=cv2.INTER_AREA)
        x, y = 60 + n * 300, 120
        frame[y:y + rgb.shape[0], x:x + rgb.shape[1]] = rgb
    return frame


@pytest.fixture
def door(tmp_path):
    return Door(tmp_path / "door")


@pytest.fixture
def kiosk(settings, clock, engine, door):  # noqa: F811 (the kiosk of test_web_api, with a camera)
    from kiosk.app import Kiosk
    from kiosk.camera import open_source
    from kiosk.events import EventBus
    from kiosk.outbox import Outbox
    from kiosk.wiut.client import WiutClient

    cam = settings.replace(replay_fps=60.0, replay_loop=False)
    bus = EventBus()
    holder = {}
    outbox = Outbox(settings.state_dir, client_for=lambda t: holder["k"].client_for(t), events=bus)
    k = Kiosk(settings, client_factory=lambda: WiutClient(settings.api_url, timeout=2, retries=1, backoff=0.01),
              engine=engine, events=bus, outbox=outbox, clock=clock.wall, monotonic=clock.monotonic,
              source_factory=lambda: open_source(f"replay:{door.folder}", cam), tick_seconds=3600)
    holder["k"] = k
    outbox.start()
    yield k
    k.close()
    outbox.stop(flush_timeout=1.0)


def capture(web, token):  # noqa: F811
    return web.post("/api/enroll/capture", headers={"X-CSRF-Token": token}, json={"userId": "00019880"})


def test_the_kiosk_camera_enrols_the_one_person_in_front_of_it(web, sandbox, orl, door):  # noqa: F811
    door.show([scene(orl["s1"][k]) for k in range(4, 10)])
    token = log_in(web)
    response = capture(web, token)
    assert response.status_code == 201, response.get_json()
    assert response.get_json() == {"userId": "00019880", "vectors": 3}      # the best 3 frames
    vectors = decode(sandbox.state.embedding("00019880", METHOD), method=METHOD, dim=192)
    assert vectors.shape == (3, 192)


def test_the_kiosk_camera_refuses_when_nobody_or_two_people_are_in_front_of_it(web, sandbox, orl, door):  # noqa: F811
    token = log_in(web)
    door.show([scene() for _ in range(6)])
    nobody = capture(web, token)
    assert nobody.status_code == 422
    assert nobody.get_json()["error"] == "No face was seen: stand in front of the camera, facing it."
    for old in door.folder.iterdir():
        old.unlink()
    door.show([scene(orl["s1"][k], orl["s2"][k]) for k in range(4, 10)])
    two = capture(web, token)
    assert two.status_code == 422
    assert "Several people" in two.get_json()["error"]
    assert not sandbox.state.embedding("00019880", METHOD)

