"""axe-core scans of every screen in a phone-sized browser, light and dark: zero serious or critical findings.

Screens: login (empty, with an error), the take-over question, the running class (status open, an undo
toast, the end-class confirmation, the enrolment dialog) and the start screen. Each is also saved with
``shot`` (``<screen>-<scheme>.png``) for a person to look at.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import phone
from tests.browser.test_page import log_in
from tests.fixtures.sandbox import DEMO_CLASS_ID, DEMO_LOGIN, OTHER_LOGIN
from tests.test_web_api import MONDAY_GUID

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SERIOUS = ("serious", "critical")


def findings(page) -> list[str]:
    """axe-core's serious and critical violations on what the page shows now (the rest is only listed)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['impact']} {v['id']}: {v['help']} ({len(v['nodes'])}x: {v['nodes'][0]['target']})"
            for v in results.response["violations"] if v.get("impact") in SERIOUS]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_screen_has_no_serious_accessibility_findings(server, kiosk, shot, scheme):
    found: dict[str, list[str]] = {}

    def scan(page, screen: str) -> None:
        found[screen] = findings(page)
        shot(page, f"{screen}-{scheme}")

    with phone(server, scheme) as page:
        page.goto("/login?ended=1")                                 # with the "session ended" notice
        expect(page.get_by_label("Username")).to_be_focused()
        expect(page.locator("#login-ended")).to_be_visible()
        scan(page, "login")
        page.get_by_label("Username").fill(DEMO_LOGIN[0])
        page.get_by_label("Password").fill("wrong-placeholder")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
        scan(page, "login-error")

        kiosk.login(*DEMO_LOGIN)                                    # a class runs: another teacher is asked
        kiosk.start_class(MONDAY_GUID, DEMO_CLASS_ID, 785, 1)
        page.reload()
        log_in(page, OTHER_LOGIN)
        expect(page.locator("#takeover")).to_be_visible()
        scan(page, "takeover")
        page.get_by_role("button", name="Cancel").click()

        log_in(page, DEMO_LOGIN)                                    # the same teacher: back to the class
        expect(page).to_have_url(re.compile(r"/class$"))
        expect(page.locator("#roster li")).to_have_count(24)
        scan(page, "class")
        page.locator("summary", has_text="Kiosk status").click()  # not the banner that names it
        scan(page, "class-status")
        page.locator("summary", has_text="Kiosk status").click()  # not the banner that names it
        first = page.locator("#roster li").first
        first.get_by_role("button", name="Absent").click()
        expect(page.locator("#toast-action")).to_be_visible()
        scan(page, "class-undo")
        page.get_by_role("button", name="End class").click()
        expect(page.locator("#confirm-dialog")).to_be_visible()
        scan(page, "confirm")
        page.get_by_role("button", name="Cancel").click()
        page.locator("#roster li", has_text="not enrolled").first.get_by_role("button", name="Enrol").click()
        expect(page.locator("#enrol-dialog")).to_be_visible()
        scan(page, "enrol")
        page.get_by_role("button", name="Close").click()

        page.get_by_role("button", name="End class").click()
        page.get_by_role("button", name="Yes").click()
        expect(page).to_have_url(re.compile(r"/start\?classEnded=1$"))
        expect(page.get_by_role("button", name="Start class")).to_be_enabled()
        scan(page, "start")
    assert found == {screen: [] for screen in found}
    assert len(found) == 9
