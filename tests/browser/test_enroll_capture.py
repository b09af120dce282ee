"""Enrolment from the kiosk's own camera, clicked in a phone-sized browser (390x844).

The teacher logs in, starts the class, opens a not-enrolled student's enrolment and taps "Use the kiosk
camera". The kiosk's camera is a looping replay folder of real faces (ORL) the test fills, read by the real
recognition engine (BlazeFace + MobileFaceNet): a looping replay keeps giving frames like a real camera, so
a camera that never sees a face runs into the kiosk's capture timeout.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from playwright.sync_api import expect

from kiosk.model.embedding_format import decode
from tests.browser.test_page import log_in
from tests.test_web_api import METHOD
from tests.test_web_enroll_engine import scene

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STUDENT = "00019880"                     # on the demo class's roster, not enrolled in the sandbox
NO_FACE = "No face was seen: stand in front of the camera, facing it."


class Door:
    """The kiosk's camera: a replay folder the test fills with frames (RGB uint8), played in a loop."""

    def __init__(self, folder):
        self.folder = folder
        self.folder.mkdir(parents=True)

    def show(self, frames: list[np.ndarray]) -> None:
        """Put ``frames`` in front of the camera; files are swapped whole, so a running capture sees the new
        frames from its next loop on (the replay decodes each file when it plays it)."""
        staging = self.folder.with_name("staging")
        staging.mkdir(exist_ok=True)
        for i, frame in enumerate(frames):
            cv2.imwrite(str(staging / f"{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            os.replace(staging / f"{i:04d}.png", self.folder / f"{i:04d}.png")


@pytest.fixture
def door(tmp_path):
    return Door(tmp_path / "door")


@pytest.fixture
def kiosk(sandbox, tmp_path, clock, engine, door):
    """The browser tests' kiosk (tests/browser/conftest.py), with the real engine and the door's camera."""
    from kiosk.app import Kiosk
    from kiosk.camera import open_source
    from kiosk.config import load_settings
    from kiosk.events import EventBus
    from kiosk.outbox import Outbox
    from kiosk.wiut.client import WiutClient

    settings = load_settings(env={"KIOSK_API_URL": sandbox.url, "KIOSK_STATE_DIR": str(tmp_path / "state"),
                                  "KIOSK_UNDO_SECONDS": "5"})
    camera = settings.replace(replay_fps=15.0, replay_loop=True)
    bus = EventBus()
    holder: dict[str, Kiosk] = {}
    outbox = Outbox(settings.state_dir, client_for=lambda t: holder["k"].client_for(t), events=bus)
    k = Kiosk(settings, client_factory=lambda: WiutClient(settings.api_url, timeout=2, retries=1, backoff=0.01),
              engine=engine, events=bus, outbox=outbox, clock=clock.wall, tick_seconds=0.5,
              source_factory=lambda: open_source(f"replay:{door.folder}", camera))
    holder["k"] = k
    outbox.start()
    yield k
    k.close()
    outbox.stop(flush_timeout=1.0)


def open_enrolment(page):
    """Log in, start the class, open the not-enrolled student's enrolment; returns (row, dialog, name)."""
    log_in(page)
    page.get_by_role("button", name="Start class").click()
    expect(page.locator("#roster li")).to_have_count(24)
    return open_enrolment_of(page, STUDENT)


def open_enrolment_of(page, user_id):
    row = page.locator(f'li[data-user-id="{user_id}"]')
    expect(row).to_contain_text("not enrolled")
    name = row.locator(".name").inner_text()
    row.get_by_role("button", name="Enrol").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading")).to_have_text(f"Enrol {name}")
    return row, dialog, name


def enrolled_in_session(page) -> bool:
    """The student's ``enrolled`` as GET /api/session gives it to the page's teacher."""
    response = page.request.get("/api/session")
    assert response.ok, response.text()
    return next(s for s in response.json()["students"] if s["userId"] == STUDENT)["enrolled"]


def test_the_kiosk_camera_enrols_the_student_standing_in_front_of_it(page, sandbox, door, orl, shot):
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    door.show([scene(orl["s1"][k]) for k in range(4, 10)])            # one student facing the camera
    row, dialog, name = open_enrolment(page)
    enrolled_before = int(page.locator("#count-enrolled").inner_text())

    dialog.get_by_role("button", name="Use the kiosk camera").click()
    expect(dialog).to_be_hidden(timeout=30_000)
    expect(page.locator("#toast-text")).to_have_text(f"{name} is enrolled (3 face vectors).")
    expect(row).not_to_contain_text("not enrolled")
    expect(row.get_by_role("button", name="Enrol")).to_have_count(0)
    expect(page.locator("#count-enrolled")).to_have_text(str(enrolled_before + 1))
    shot(page, "enrol-kiosk-camera")

    assert enrolled_in_session(page) is True
    vectors = decode(sandbox.state.embedding(STUDENT, METHOD), method=METHOD, dim=192)
    assert vectors.shape == (3, 192)                                  # stored in the university
    assert not errors


def test_a_kiosk_camera_that_sees_no_face_says_so_and_enrols_nobody(page, sandbox, door, shot):
    door.show([scene() for _ in range(6)])                            # an empty doorway, over and over
    row, dialog, _ = open_enrolment(page)

    use_camera = dialog.get_by_role("button", name="Use the kiosk camera")
    use_camera.click()
    expect(dialog.get_by_role("status")).to_contain_text("stand alone in front of the kiosk camera")
    expect(use_camera).to_be_disabled()                               # no second capture while one runs
    upload = dialog.get_by_role("button", name="Upload photos")
    expect(upload).to_be_disabled()                                   # nor an upload racing it for the student
    expect(dialog.get_by_role("alert")).to_have_text(NO_FACE, timeout=30_000)   # after the 10 s capture timeout
    expect(dialog.get_by_role("status")).to_have_text("")
    expect(use_camera).to_be_enabled()                                # the teacher can try again
    expect(upload).to_be_enabled()
    shot(page, "enrol-capture-no-face")

    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    expect(row).to_contain_text("not enrolled")
    expect(row.get_by_role("button", name="Enrol")).to_be_visible()
    assert enrolled_in_session(page) is False
    assert sandbox.state.embedding(STUDENT, METHOD) is None
    expect(page.locator("#toast-text")).not_to_contain_text("is enrolled")       # no success message


def test_a_capture_that_ends_after_the_teacher_moved_on_names_the_right_student(page, kiosk, sandbox, door, orl,
                                                                               shot):
    door.show([scene() for _ in range(6)])                            # nobody in front of the camera yet
    row, dialog, name = open_enrolment(page)
    dialog.get_by_role("button", name="Use the kiosk camera").click()
    expect(dialog.get_by_role("status")).to_contain_text("kiosk camera")
    dialog.get_by_role("button", name="Close").click()                # the teacher does not wait ...
    other = next(s for s in kiosk.session()["students"] if not s["enrolled"] and s["userId"] != STUDENT)
    other_row, other_dialog, other_name = open_enrolment_of(page, other["userId"])   # ... and opens another
    door.show([scene(orl["s1"][k]) for k in range(4, 10)])            # now the first student faces the camera

    told = f"{name} is enrolled (3 face vectors)."
    expect(other_dialog.get_by_role("status")).to_have_text(told, timeout=30_000)   # where the teacher looks now
    expect(page.locator("#toast-text")).to_have_text(told)
    expect(row).not_to_contain_text("not enrolled")
    expect(other_dialog).to_be_visible()                              # still enrolling the other student
    expect(other_dialog.get_by_role("heading")).to_have_text(f"Enrol {other_name}")
    expect(other_dialog.get_by_role("alert")).to_be_hidden()
    expect(other_row).to_contain_text("not enrolled")
    shot(page, "enrol-capture-moved-on")
    assert sandbox.state.embedding(other["userId"], METHOD) is None
