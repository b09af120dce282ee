"""axe-core scans of the three pages (login, start, live class) in a phone-sized browser, light and dark."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.test_page import log_in

pytestmark = pytest.mark.browser


def violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']}: {v['help']} ({len(v['nodes'])}x)" for v in results.response["violations"]]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_have_no_accessibility_violations(page, scheme):
    page.emulate_media(color_scheme=scheme)
    page.goto("/login")
    found = {"login": violations(page)}
    log_in(page)
    expect(page.get_by_role("button", name="Start class")).to_be_enabled()
    found["start"] = violations(page)
    page.get_by_role("button", name="Start class").click()
    expect(page.locator("#roster li")).to_have_count(24)
    page.get_by_text("Kiosk status").click()
    found["class"] = violations(page)
    assert found == {"login": [], "start": [], "class": []}
