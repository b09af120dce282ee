"""Browser fixtures: the kiosk served by waitress on 127.0.0.1 in a thread, and Debian's chromium via Playwright.

Playwright never downloads a browser here: it drives /usr/bin/chromium (``apt-get install chromium``).
"""

from __future__ import annotations

import shutil
import threading

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


@pytest.fixture
def server(kiosk):
    """The page at ``http://127.0.0.1:<port>`` served by waitress (threads > the SSE cap)."""
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
    yield f"http://127.0.0.1:{srv.effective_port}"
    kiosk.events.close()                   # ends the live streams so their worker threads finish
    stop.set()
    thread.join(timeout=5)
    srv.task_dispatcher.shutdown()


@pytest.fixture
def page(server):
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=server)
        page = context.new_page()
        page.set_default_timeout(10_000)
        yield page
        context.close()
        browser.close()
