"""The page warns before the university login runs out, and logging in again from the banner renews it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_page import log_in
from tests.fixtures.sandbox import DEMO_LOGIN

pytestmark = pytest.mark.browser


def test_a_login_running_out_soon_is_announced_and_renewed_without_leaving_the_class(page, sandbox, shot):
    sandbox.state.refresh_ttl = 40 * 60                  # this university login ends in 40 minutes
    log_in(page)
    page.get_by_role("button", name="Start class").click()
    expect(page.locator("#roster li")).to_have_count(24)
    warning = page.locator("#banners .banner", has_text="Your university login runs out")
    expect(warning).to_have_text(re.compile(r"runs out in (39|40) min: log in again before then"))
    page.locator("summary", has_text="Kiosk status").click()
    expect(page.locator("#st-login")).to_have_text(re.compile(r"in (39|40) min"))
    shot(page, "login-running-out")

    sandbox.state.refresh_ttl = 30 * 86400               # the next login lasts the usual 30 days
    warning.get_by_role("link", name="Log in again").click()
    expect(page).to_have_url(re.compile(r"/login\?again=1$"))
    page.get_by_label("Password").fill(DEMO_LOGIN[1])
    if not page.get_by_label("Username").input_value():
        page.get_by_label("Username").fill(DEMO_LOGIN[0])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/class$"))     # the same class, still running
    expect(page.locator("#roster li")).to_have_count(24)
    expect(page.locator("#banners")).not_to_contain_text("runs out")
    page.locator("summary", has_text="Kiosk status").click()
    expect(page.locator("#st-login")).to_have_text("in 30 days")


def test_a_long_login_gives_no_warning(page, shot):
    log_in(page)
    page.get_by_role("button", name="Start class").click()
    expect(page.locator("#roster li")).to_have_count(24)
    page.locator("summary", has_text="Kiosk status").click()
    expect(page.locator("#st-login")).to_have_text("in 30 days")
    expect(page.locator("#banners")).not_to_contain_text("runs out")
