"""The teacher's page in a real browser (phone-sized): log in, start, watch a student turn present, mark, end."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.fixtures.sandbox import DEMO_LOGIN
from tests.test_web_api import MONDAY_GUID

pytestmark = pytest.mark.browser


def log_in(page):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.get_by_label("Username").fill(DEMO_LOGIN[0])
    page.get_by_label("Password").fill(DEMO_LOGIN[1])
    page.get_by_role("button", name="Log in").click()


def test_wrong_password_says_so_plainly(page):
    page.goto("/login")
    page.get_by_label("Username").fill(DEMO_LOGIN[0])
    page.get_by_label("Password").fill("wrong-placeholder")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    page.screenshot(path="/tmp/kiosk-login-error.png")


def test_login_start_live_mark_undo_and_end(page, kiosk):
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    log_in(page)
    start = page.get_by_role("button", name="Start class")
    expect(start).to_be_enabled()                                   # the running slot is preselected
    expect(page.get_by_label("Slot")).to_have_value(MONDAY_GUID)
    expect(page.get_by_label("Teaching week")).to_have_value("46890")
    page.screenshot(path="/tmp/kiosk-start.png")
    start.click()                                                   # tap 2 after "Log in"

    expect(page.locator("#roster li")).to_have_count(24)
    page.screenshot(path="/tmp/kiosk-class.png", full_page=False)
    snap = kiosk.session()
    first, second = [s for s in snap["students"] if s["source"] is None][:2]

    kiosk._session.on_recognised(first["userId"], 88)               # the camera recognises a student
    row = page.locator(f'li[data-user-id="{first["userId"]}"]')
    expect(row).to_contain_text("camera 88%")
    expect(row).to_have_class(re.compile(r"\bpresent\b"))

    other = page.locator(f'li[data-user-id="{second["userId"]}"]')
    other.get_by_role("button", name="Absent").click()
    expect(other).to_contain_text("Absent · marked by you")
    page.screenshot(path="/tmp/kiosk-undo.png")
    other.get_by_role("button", name="Undo").click()
    expect(other).to_contain_text("No mark yet")

    page.get_by_placeholder("Search by name or ID").fill(first["userId"])
    expect(page.locator("#roster li")).to_have_count(1)
    page.get_by_placeholder("Search by name or ID").fill("")

    page.get_by_text("Kiosk status").click()
    expect(page.locator("#st-pending")).to_have_text("0")
    expect(page.locator("#st-camera")).to_have_text("off")
    page.screenshot(path="/tmp/kiosk-status.png")

    page.goto("/")                                                  # reopening the page returns to the class
    expect(page).to_have_url(re.compile(r"/class$"))
    expect(page.locator(f'li[data-user-id="{first["userId"]}"]')).to_contain_text("camera 88%")

    page.get_by_role("button", name="End class").click()
    page.get_by_role("button", name="Yes").click()
    expect(page).to_have_url(re.compile(r"/start$"))
    assert kiosk.session() is None
    assert not [e for e in errors if "Content Security Policy" in e]


def test_another_teacher_is_asked_before_taking_over(page, kiosk, server):
    kiosk.login(*DEMO_LOGIN)
    kiosk.start_class(MONDAY_GUID, 46703)
    page.goto("/login")
    page.get_by_label("Username").fill("other.teacher")
    page.get_by_label("Password").fill("sandbox-password-2")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#takeover-text")).to_contain_text("Teacher teacher is running a class: take over?")
    page.screenshot(path="/tmp/kiosk-takeover.png")
    assert kiosk.session() is not None
    page.get_by_role("button", name="Take over and end their class").click()
    expect(page).to_have_url(re.compile(r"/start$"))
    assert kiosk.teacher == "other.teacher" and kiosk.session() is None


def test_enrol_a_not_enrolled_student_from_a_photo(page, kiosk, sandbox):
    from tests.test_web_api import png

    log_in(page)
    page.get_by_role("button", name="Start class").click()
    row = page.locator('li[data-user-id="00019880"]')
    expect(row).to_contain_text("not enrolled")
    row.get_by_role("button", name="Enrol").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Photos of the student's face").set_input_files(
        files=[{"name": "dark.png", "mimeType": "image/png", "buffer": png(0)}])
    dialog.get_by_role("button", name="Upload photos").click()
    expect(dialog.get_by_role("alert")).to_have_text("Photo 1: no face found.")
    page.screenshot(path="/tmp/kiosk-enrol-refused.png")
    dialog.get_by_label("Photos of the student's face").set_input_files(
        files=[{"name": "face.png", "mimeType": "image/png", "buffer": png(200)}])
    dialog.get_by_role("button", name="Upload photos").click()
    expect(dialog).to_be_hidden()
    expect(row).not_to_contain_text("not enrolled")
    assert sandbox.state.embedding("00019880", "mobilefacenet-v1")


def test_dark_mode_page(server):
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=server, color_scheme="dark")
        page = context.new_page()
        log_in(page)
        expect(page.get_by_role("button", name="Start class")).to_be_enabled()
        page.get_by_role("button", name="Start class").click()
        expect(page.locator("#roster li")).to_have_count(24)
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        page.screenshot(path="/tmp/kiosk-dark.png")
        context.close()
        browser.close()
    assert background == "rgb(17, 19, 22)"


def test_the_page_leaves_a_class_that_ended_by_itself(page, kiosk, clock):
    log_in(page)
    page.get_by_role("button", name="Start class").click()
    expect(page.locator("#roster li")).to_have_count(24)
    clock.advance(3 * 3600)                                         # past the slot's end + grace: the tick ends it
    expect(page).to_have_url(re.compile(r"/start$"))
    assert kiosk.session() is None
