"""The teacher's page in a real browser (phone-sized): log in, start, watch a student turn present, mark, end."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.fixtures.sandbox import DEMO_LOGIN
from tests.test_web_api import MONDAY_GUID

pytestmark = pytest.mark.browser


def log_in(page, login=DEMO_LOGIN):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.get_by_label("Username").fill(login[0])
    page.get_by_label("Password").fill(login[1])
    page.get_by_role("button", name="Log in").click()


def test_wrong_password_says_so_plainly(page, shot):
    page.goto("/login")
    page.get_by_label("Username").fill(DEMO_LOGIN[0])
    page.get_by_label("Password").fill("wrong-placeholder")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    shot(page, "login-error")


def test_login_start_live_mark_undo_and_end(page, kiosk, shot):
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    log_in(page)
    start = page.get_by_role("button", name="Start class")
    expect(start).to_be_enabled()                                   # the running slot is preselected
    expect(page.get_by_label("Slot")).to_have_value(MONDAY_GUID)
    expect(page.get_by_label("Teaching week")).to_have_value("46890")
    shot(page, "start")
    start.click()                                                   # tap 2 after "Log in"

    expect(page.locator("#roster li")).to_have_count(24)
    expect(page.locator("#class-title")).to_contain_text("Seminar")       # what the teacher recognises
    expect(page.locator("#class-sub")).to_contain_text("Mon 09:00 - 11:00")
    expect(page.locator("#banners")).to_contain_text("The camera is off")  # this kiosk has no camera
    shot(page, "class")
    snap = kiosk.session()
    first, second = [s for s in snap["students"] if s["source"] is None][:2]

    kiosk._session.on_recognised(first["userId"], 88)               # the camera recognises a student
    row = page.locator(f'li[data-user-id="{first["userId"]}"]')
    expect(row).to_contain_text("camera 88%")
    expect(row).to_have_class(re.compile(r"\bpresent\b"))

    other = page.locator(f'li[data-user-id="{second["userId"]}"]')
    other.get_by_role("button", name="Absent").click()
    expect(other).to_contain_text("Absent · marked by you")
    shot(page, "undo")
    other.get_by_role("button", name="Undo").click()
    expect(other).to_contain_text("No mark yet")

    page.get_by_placeholder("Search by name or ID").fill(first["userId"])
    expect(page.locator("#roster li")).to_have_count(1)
    page.get_by_placeholder("Search by name or ID").fill("")

    page.locator("summary", has_text="Kiosk status").click()  # not the banner that names it
    expect(page.locator("#st-pending")).to_have_text("0")
    expect(page.locator("#st-camera")).to_have_text("off")
    shot(page, "status")

    page.goto("/")                                                  # reopening the page returns to the class
    expect(page).to_have_url(re.compile(r"/class$"))
    expect(page.locator(f'li[data-user-id="{first["userId"]}"]')).to_contain_text("camera 88%")

    page.get_by_role("button", name="End class").click()
    page.get_by_role("button", name="Yes").click()
    expect(page).to_have_url(re.compile(r"/start\?classEnded=1$"))
    assert kiosk.session() is None
    assert not [e for e in errors if "Content Security Policy" in e]


def test_another_teacher_is_asked_before_taking_over(page, kiosk, shot):
    kiosk.login(*DEMO_LOGIN)
    kiosk.start_class(MONDAY_GUID, 46703)
    page.goto("/login")
    page.get_by_label("Username").fill("other.teacher")
    page.get_by_label("Password").fill("sandbox-password-2")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#takeover-text")).to_contain_text("Teacher teacher is running a class: take over?")
    shot(page, "takeover")
    assert kiosk.session() is not None
    page.get_by_role("button", name="Take over and end their class").click()
    expect(page).to_have_url(re.compile(r"/start$"))
    assert kiosk.teacher == "other.teacher" and kiosk.session() is None


def test_enrol_a_not_enrolled_student_from_a_photo(page, kiosk, sandbox, shot):
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
    shot(page, "enrol-refused")
    dialog.get_by_label("Photos of the student's face").set_input_files(
        files=[{"name": "face.png", "mimeType": "image/png", "buffer": png(200)}])
    dialog.get_by_role("button", name="Upload photos").click()
    expect(dialog).to_be_hidden()
    expect(row).not_to_contain_text("not enrolled")
    assert sandbox.state.embedding("00019880", "mobilefacenet-v1")


def test_dark_mode_page(server, shot):
    from tests.browser.conftest import phone

    with phone(server, "dark") as page:
        log_in(page)
        expect(page.get_by_role("button", name="Start class")).to_be_enabled()
        page.get_by_role("button", name="Start class").click()
        expect(page.locator("#roster li")).to_have_count(24)
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        shot(page, "class-dark")
    assert background == "rgb(17, 19, 22)"


def test_the_page_leaves_a_class_that_ended_by_itself(page, kiosk, clock):
    log_in(page)
    page.get_by_role("button", name="Start class").click()
    expect(page.locator("#roster li")).to_have_count(24)
    clock.advance(3 * 3600)                                         # past the slot's end + grace: the tick ends it
    expect(page).to_have_url(re.compile(r"/start\?classEnded=1$"))
    expect(page.locator("#class-ended")).to_have_text("The class has ended. Marks still waiting are sent by the kiosk.")
    assert kiosk.session() is None


def test_mark_all_remaining_absent_asks_first_and_can_be_undone(page, kiosk, shot):
    log_in(page)
    page.get_by_role("button", name="Start class").click()
    expect(page.locator("#roster li")).to_have_count(24)
    unmarked = [s["userId"] for s in kiosk.session()["students"] if s["source"] is None]
    page.get_by_role("button", name="Mark all remaining absent").click()
    expect(page.locator("#confirm-text")).to_have_text(f"Mark the {len(unmarked)} students without a mark absent?")
    page.get_by_role("button", name="Cancel").click()
    assert all(s["source"] is None for s in kiosk.session()["students"] if s["userId"] in unmarked)
    page.get_by_role("button", name="Mark all remaining absent").click()
    page.get_by_role("button", name="Yes").click()
    expect(page.locator(f'li[data-user-id="{unmarked[0]}"]')).to_contain_text("Absent · marked by you")
    undo_all = page.locator("#toast-action")
    expect(undo_all).to_contain_text(re.compile(r"Undo all \(\d s\)"))
    shot(page, "absent-remaining")
    undo_all.click()
    expect(page.locator("#toast-text")).to_have_text("All undone.")
    expect(page.locator(f'li[data-user-id="{unmarked[0]}"]')).to_contain_text("No mark yet")
    assert all(s["source"] is None for s in kiosk.session()["students"] if s["userId"] in unmarked)


def test_the_page_says_plainly_when_the_university_api_is_down(page, kiosk, sandbox, shot):
    log_in(page)
    page.get_by_role("button", name="Start class").click()
    expect(page.locator("#roster li")).to_have_count(24)
    expect(page.locator("#banners")).not_to_contain_text("university API")
    sandbox.state.set_knobs(unavailable_for=60)
    user = next(s["userId"] for s in kiosk.session()["students"] if s["source"] is None)
    kiosk._session.on_recognised(user, 88)                          # this mark cannot be delivered now
    expect(page.locator("#banners")).to_contain_text("The university API is not taking marks right now",
                                                     timeout=15_000)
    shot(page, "api-down")


SMALL_CONTROLS = """() => [...document.querySelectorAll('button, input, select, summary, a, .segmented label')]
    .filter((el) => el.offsetParent !== null && getComputedStyle(el).opacity !== '0')
    .map((el) => [el.id || el.textContent.trim().slice(0, 20), el.getBoundingClientRect()])
    .filter(([, r]) => r.width < 44 || r.height < 44)
    .map(([name, r]) => `${name} ${Math.round(r.width)}x${Math.round(r.height)}`)"""


def test_every_control_is_at_least_44_px_for_a_thumb(page):
    page.goto("/login")
    small = {"login": page.evaluate(SMALL_CONTROLS)}
    log_in(page)
    expect(page.get_by_role("button", name="Start class")).to_be_enabled()
    small["start"] = page.evaluate(SMALL_CONTROLS)
    page.get_by_role("button", name="Start class").click()
    expect(page.locator("#roster li")).to_have_count(24)
    page.locator("summary", has_text="Kiosk status").click()  # not the banner that names it
    small["class"] = page.evaluate(SMALL_CONTROLS)
    page.locator("#roster li", has_text="not enrolled").first.get_by_role("button", name="Enrol").click()
    small["enrol"] = page.evaluate(SMALL_CONTROLS)
    assert small == {"login": [], "start": [], "class": [], "enrol": []}


def test_a_page_whose_session_ended_elsewhere_says_so_at_the_login(page, kiosk):
    log_in(page)
    page.get_by_role("button", name="Start class").click()
    expect(page.locator("#roster li")).to_have_count(24)
    kiosk.logout()                                                  # e.g. logged out from another phone
    expect(page).to_have_url(re.compile(r"/login\?ended=1$"))
    expect(page.get_by_role("status").filter(has_text="Your session on this kiosk has ended")).to_be_visible()
    page.goto("/login")
    expect(page.locator("#login-ended")).to_be_hidden()


def test_a_refused_mark_can_be_sent_again_from_the_status_area(page, kiosk, sandbox):
    from kiosk.outbox import DeadLetter, Mark

    log_in(page)
    page.get_by_role("button", name="Start class").click()
    expect(page.locator("#roster li")).to_have_count(24)
    snap = kiosk.session()
    user = next(s["userId"] for s in snap["students"] if s["source"] is None)
    mark = Mark(snap["classId"], user, 88, "teacher", 0.0)
    kiosk.outbox._dead[mark.key] = DeadLetter(mark, 400, "Refused by the test", 0.0)
    kiosk.outbox._publish()                                        # the page hears of it like of a real refusal
    page.locator("summary", has_text="Kiosk status").click()  # not the banner that names it
    refused = page.locator("#st-dead li", has_text=user)
    expect(refused).to_contain_text("Refused by the test")
    refused.get_by_role("button", name="Send again").click()
    expect(page.locator("#toast-text")).to_have_text("The mark was queued again.")
    expect(page.locator("#st-dead li")).to_have_count(0)
    assert kiosk.outbox.flush(10.0)
    assert sandbox.state.attendance(snap["classId"])[user].confidence == 88     # delivered this time
