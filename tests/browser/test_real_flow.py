"""The whole flow in a phone-sized browser with the REAL kiosk: recognition engine, replay camera, LED/buzzer.

The demo university (kiosk.demo_data) runs on loopback with ORL faces enrolled through SetEmbedding;
``kiosk run``'s own parts (daemon.Services: outbox, mock GPIO, the camera pipeline) serve the page. The
teacher logs in, starts the class that is running now, watches students walking past the replayed door
turn present without reloading, marks one by hand, enrols a student from a photo (after a refused
photo with no face), and ends the class.
"""

from __future__ import annotations

import re
from datetime import datetime

import cv2
import numpy as np
import pytest
from playwright.sync_api import expect

from kiosk import demo_data
from kiosk.datasets import orl_padded_rgb
from tests.browser.conftest import phone, serving
from tests.browser.test_page import log_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DEMO = (demo_data.DEMO_USERNAME, demo_data.DEMO_PASSWORD)
CAMERA_MARK = re.compile(r"camera \d+%")


@pytest.fixture
def door(face_settings, engine, tmp_path):
    """(kiosk, demo class, sandbox): the demo university with its class running now, and the real kiosk."""
    from kiosk.daemon import Services
    from kiosk.wiut.client import WiutClient
    from kiosk.wiut.sandbox import SandboxServer

    state, demo = demo_data.build_state(datetime.now(face_settings.tz))
    replay = demo_data.build_replay(face_settings)
    with SandboxServer(state) as sandbox:
        with WiutClient(sandbox.url) as client:
            client.login(*DEMO)
            assert demo_data.enrol_demo_students(face_settings, client, engine) == []
            client.logout()
        settings = face_settings.replace(api_url=sandbox.url, camera=f"replay:{replay}", replay_loop=False,
                                         gpio="mock", state_dir=str(tmp_path / "state"), undo_seconds=5.0)
        services = Services(settings, engine=engine).build()
        try:
            yield services.kiosk, demo, sandbox
        finally:
            services.close()


def jpeg(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def camera_marked(page) -> set[str]:
    rows = page.locator("#roster li", has_text=CAMERA_MARK)
    return {rows.nth(i).get_attribute("data-user-id") for i in range(rows.count())}


def test_a_class_at_the_door_from_login_to_end(door, orl, shot):
    kiosk, demo, sandbox = door
    with serving(kiosk) as url, phone(url) as page:
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        log_in(page, DEMO)
        start = page.get_by_role("button", name="Start class")
        expect(start).to_be_enabled()                                   # the running slot is preselected
        expect(page.get_by_label("Slot")).to_have_value(demo.lesson_guid)
        expect(page.get_by_label("Teaching week")).to_have_value(str(demo.class_id))
        shot(page, "real-start")
        start.click()

        expect(page.locator("#roster li")).to_have_count(len(demo.roster))
        expect(page.locator("#class-title")).to_have_text("4CS001-n · Seminar")
        page.evaluate("window.sameDocument = true")                     # gone if the page reloads
        before = len(camera_marked(page))
        page.wait_for_function("n => document.querySelectorAll('#roster li.present').length >= n",
                               arg=before + 6, timeout=60_000)          # students walk past the door
        assert page.evaluate("window.sameDocument") is True             # ... and turn present live
        marked = camera_marked(page)
        assert marked and marked <= set(demo.expected_present)          # nobody else is marked
        expect(page.locator("#count-present")).to_have_text(str(len(marked)))
        page.locator("summary", has_text="Kiosk status").click()  # not the banner that names it
        expect(page.locator("#st-last")).to_contain_text("%")           # who, with the confidence
        expect(page.locator("#st-feedback")).to_contain_text("green light + beep")
        expect(page.locator("#st-camera")).to_contain_text(re.compile(r"running|ended"))
        shot(page, "real-class-status")
        page.locator("summary", has_text="Kiosk status").click()  # not the banner that names it
        page.locator("#filter").get_by_text("Present", exact=True).click()   # the filter: who is here
        expect(page.locator("#roster li").first).to_contain_text(CAMERA_MARK)
        assert all(CAMERA_MARK.search(text) for text in page.locator("#roster li").all_inner_texts())
        shot(page, "real-class-live")
        page.locator("#filter").get_by_text("All", exact=True).click()
        expect(page.locator("#roster li")).to_have_count(len(demo.roster))

        by_hand = next(u for u in demo.roster
                       if u not in demo.expected_present and u != demo_data.user_id_of("s14"))
        row = page.locator(f'li[data-user-id="{by_hand}"]')
        row.get_by_role("button", name="Present").click()
        expect(row).to_contain_text("Present · marked by you")
        expect(page.locator("#toast-action")).to_contain_text(re.compile(r"Undo \(\d s\)"))
        shot(page, "real-undo")

        newcomer = demo_data.user_id_of("s14")                          # on the roster, not enrolled
        row = page.locator(f'li[data-user-id="{newcomer}"]')
        expect(row).to_contain_text("not enrolled")
        row.get_by_role("button", name="Enrol").click()
        dialog = page.get_by_role("dialog")
        photos = dialog.get_by_label("Photos of the student's face")
        shot(page, "real-enrol-dialog")
        photos.set_input_files(files=[{"name": "wall.jpg", "mimeType": "image/jpeg",
                                       "buffer": jpeg(np.full((480, 640, 3), 128, np.uint8))}])
        dialog.get_by_role("button", name="Upload photos").click()
        expect(dialog.get_by_role("alert")).to_have_text("Photo 1: No face found in the photo.")
        shot(page, "real-enrol-refused")
        face = cv2.resize(orl_padded_rgb(orl["s14"][0]), None, fx=2, fy=2)
        photos.set_input_files(files=[{"name": "face.jpg", "mimeType": "image/jpeg", "buffer": jpeg(face)}])
        dialog.get_by_role("button", name="Upload photos").click()
        expect(dialog).to_be_hidden(timeout=30_000)
        expect(row).not_to_contain_text("not enrolled")
        assert sandbox.state.embedding(newcomer, kiosk.settings.embedding_method)

        page.get_by_role("button", name="End class").click()
        page.get_by_role("button", name="Yes").click()
        expect(page).to_have_url(re.compile(r"/start\?classEnded=1$"))
        assert kiosk.session() is None
        assert sandbox.state.attendance(demo.class_id)[by_hand].confidence == 105   # sent when the class ended
        assert not [e for e in errors if "Content Security Policy" in e]
