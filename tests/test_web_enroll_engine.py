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
