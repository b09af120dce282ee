"""Browser fixtures: the kiosk served by waitress on 127.0.0.1 in a thread, and Debian's chromium via Playwright.

Playwright never downloads a browser here: it drives /usr/bin/chromium (``apt-get install chromium``).
``shot(page, name)`` saves a screenshot of each screen under ``$KIOSK_SCREENSHOTS`` (default: a pytest
temporary folder) so a person can look at them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path

import pytest

from kiosk.app import Kiosk
from kiosk.config import load_settings
from kiosk.events import EventBus
from kiosk.outbox import Outbox
from kiosk.web import create_app
from kiosk.wiut.client import WiutClient
from tests.test_web_api import Clock, FakeEngine

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def kiosk(sandbox, tmp_path, clock):
    settings = load_settings(env={"KIOSK_API_URL": sandbox.url, "KIOSK_STATE_DIR": str(tmp_path),
                                  "KIOSK_UNDO_SECONDS": "5"})
    bus = EventBus()
    holder: dict[str, Kiosk] = {}
    outbox = Outbox(settings.state_dir, client_for=lambda t: holder["k"].client_for(t), events=bus)
    k = Kiosk(settings, client_factory=lambda: WiutClient(settings.api_url, timeout=2, retries=1, backoff=0.01),
              engine=FakeEngine(), events=bus, outbox=outbox, clock=clock.wall, tick_seconds=0.5)
    holder["k"] = k
    outbox.start()
    yield k
    k.close()
    outbox.stop(flush_timeout=1.0)


@contextlib.contextmanager
def serving(kiosk):
    """Serve ``create_app(kiosk)`` with waitress (threads > the SSE cap); yields ``http://127.0.0.1:<port>``."""
    from waitress import create_server
    from waitress.wasyncore import close_all, loop

    app = create_app(kiosk)
    srv = create_server(app, host="127.0.0.1", port=0, threads=kiosk.settings.web_threads)
    stop = threading.Event()

    def serve() -> None:                   # waitress's own loop, stoppable from its own thread
        while not stop.is_set():
            loop(timeout=0.05, map=srv._map, count=1)
        close_all(srv._map)

    thread = threading.Thread(target=serve, name="waitress", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.effective_port}"
    finally:
        kiosk.events.close()               # ends the live streams so their worker threads finish
        stop.set()
        thread.join(timeout=5)
        srv.task_dispatcher.shutdown()


@pytest.fixture
def server(kiosk):
    """The page at ``http://127.0.0.1:<port>``."""
    with serving(kiosk) as url:
        yield url


@contextlib.contextmanager
def phone(url: str, scheme: str = "light"):
    """A phone-sized page (390x844) of Debian's chromium at ``url``, in the colour ``scheme``."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=PHONE, base_url=url, color_scheme=scheme)
        page = context.new_page()
        page.set_default_timeout(10_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()


@pytest.fixture
def page(server):
    with phone(server) as page:
        yield page


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Where screenshots go: $KIOSK_SCREENSHOTS, else a pytest temporary folder."""
    folder = Path(os.environ.get("KIOSK_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def shot(screenshots):
    """``shot(page, name)``: save what the phone shows now as ``<name>.png``."""

    def take(page, name: str) -> Path:
        path = screenshots / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    return take
