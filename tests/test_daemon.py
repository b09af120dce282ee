"""``kiosk run``: its own parts (signals, clock check, watchdog policy, TLS server) and the whole daemon
as a subprocess against the sandbox API, with a replay camera, mock GPIO and a fake systemd socket."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from kiosk.config import load_settings
from kiosk.daemon import (
    TLSServer,
    WatchdogFeeder,
    check_clock,
    clock_skew,
    status_line,
    stop_on_signals,
    watchdog_ok,
)
from kiosk.errors import ConfigError
from kiosk.pipeline import Pipeline
from kiosk.sdnotify import Notifier
from kiosk.wiut.sandbox import SandboxServer, SandboxState
from tests.helpers import free_port
from tests.test_pipeline import CALIBRATION, ENROLLED, FakeEngine, ScriptedCapture, gallery, image, wait_until

REPO = Path(__file__).resolve().parent.parent


# --- pure parts ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("age", "ok"), [(None, True), (0.0, True), (20.0, True), (20.5, False), (600, False)])
def test_watchdog_policy(age, ok):
    assert watchdog_ok(age, stall_seconds=20.0) is ok


def test_clock_skew_reads_http_dates():
    assert clock_skew("Fri, 04 Dec 2026 12:00:00 GMT", 1796385600.0 - 300) == 300.0
    assert clock_skew("not a date", 0.0) is None
    assert clock_skew(None, 0.0) is None


class FakeResponse:
    def __init__(self, date):
        self.headers = {"Date": date} if date else {}


@pytest.mark.parametrize(("server_offset", "warned"), [(0, False), (110, False), (-119, False), (180, True),
                                                       (-600, True)])
def test_the_clock_warning_needs_more_than_two_minutes(server_offset, warned):
    now = 1796385600.0
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + server_offset))
    warning = check_clock("http://api/api", timeout=1, head=lambda url, **kw: FakeResponse(date), now=lambda: now)
    assert (warning is not None) is warned
    if warned:
        assert ("behind" if server_offset > 0 else "ahead of") in warning and "\n" not in warning


def test_an_unreachable_api_gives_no_clock_warning():
    def head(url, **kw):
        raise requests.ConnectionError("refused")

    assert check_clock("http://api/api", timeout=1, head=head) is None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_set_the_stop_event_and_the_old_handler_comes_back(signum):
    before = signal.getsignal(signum)
    stop = threading.Event()
    with stop_on_signals(stop):
        os.kill(os.getpid(), signum)
        assert stop.wait(5)
    assert signal.getsignal(signum) is before


def test_the_status_line_names_no_one():
    assert status_line(None) == "Idle: no class running."


# --- a hung camera loop stops the watchdog ------------------------------------------------------
class BlockingEngine(FakeEngine):
    """Hangs in detection while ``hang`` is set, like a stuck camera driver or model."""

    def __init__(self):
        super().__init__()
        self.hang, self.release, self.entered = threading.Event(), threading.Event(), threading.Event()

    def faces(self, img):
        if self.hang.is_set():
            self.entered.set()
            self.release.wait(10)
        return super().faces(img)


def test_a_hung_pipeline_stops_the_watchdog_pings_and_a_recovered_one_resumes(tmp_path):
    now = [1000.0]
    engine, capture = BlockingEngine(), ScriptedCapture()
    settings = load_settings(env={"KIOSK_STATE_DIR": str(tmp_path)})
    pipeline = Pipeline(settings, engine=engine, source_factory=lambda: None, on_decision=lambda d: "marked",
                        calibration=CALIBRATION, clock=lambda: now[0], capture_factory=lambda f: capture)
    sent = []

    class Recording(Notifier):
        def notify(self, *lines):
            sent.extend(lines)
            return True

    feeder = WatchdogFeeder(Recording(""), pipeline.tick_age, stall_seconds=20)
    assert feeder.feed() and sent == ["WATCHDOG=1"]          # no class yet: idle is healthy
    with pipeline:
        pipeline.start(gallery())
        engine.hang.set()
        capture.feed([image(ENROLLED)])
        assert engine.entered.wait(10)
        now[0] += 30                                         # 30 s with the loop stuck in one frame
        assert not feeder.feed() and sent == ["WATCHDOG=1"]
        engine.hang.clear()
        engine.release.set()
        assert wait_until(lambda: pipeline.tick_age() == 0.0)
        assert feeder.feed() and sent == ["WATCHDOG=1", "WATCHDOG=1"]
        assert status_line(pipeline).startswith("Class running; camera running")
    assert pipeline.tick_age() is None and feeder.feed()  # class over: healthy again


# --- TLS ------------------------------------------------------------------------------------------------
@pytest.fixture
def certificate(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=kiosk",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def _hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["wsgi.url_scheme"].encode()]


def test_the_tls_server_serves_https_with_the_configured_certificate(certificate, tmp_path):
    cert, key = certificate
    settings = load_settings(env={"KIOSK_HOST": "127.0.0.1", "KIOSK_PORT": str(free_port()),
                                  "KIOSK_TLS_CERT": str(cert), "KIOSK_TLS_KEY": str(key),
                                  "KIOSK_STATE_DIR": str(tmp_path)})
    server = TLSServer(_hello, settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with requests.Session() as http:
            answer = http.get(server.url, verify=str(cert), timeout=10)
        assert answer.status_code == 200 and answer.text == "https"
        with pytest.raises(requests.ConnectionError), requests.Session() as http:
            http.get(server.url.replace("https", "http"), timeout=10)
    finally:
        server.close()
        server.close()
        thread.join(10)
    assert not thread.is_alive()


def test_an_unreadable_certificate_is_a_plain_config_error(tmp_path):
    settings = load_settings(env={"KIOSK_TLS_CERT": str(tmp_path / "none.pem"), "KIOSK_TLS_KEY": str(tmp_path / "k"),
                                  "KIOSK_STATE_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="TLS certificate or key cannot be loaded"):
        TLSServer(_hello, settings)


# --- the daemon as a subprocess ---------------------------------------------------------------------
class Daemon:
    """``python -m kiosk run`` with a clean KIOSK_* environment; stdout lines arrive in ``lines``."""

    def __init__(self, tmp_path: Path, api_url: str, **extra: str):
        self.port = free_port()
        (tmp_path / "replay").mkdir(exist_ok=True)
        (tmp_path / "kiosk.toml").write_text("")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        (tmp_path / "n.sock").unlink(missing_ok=True)  # left by an earlier run in the same folder
        self.notify.bind(str(tmp_path / "n.sock"))
        self.notify.settimeout(30)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KIOSK_", "NOTIFY_", "WATCHDOG_"))}
        env.update({"KIOSK_CONFIG": str(tmp_path / "kiosk.toml"), "KIOSK_API_URL": api_url,
                    "KIOSK_HOST": "127.0.0.1", "KIOSK_PORT": str(self.port), "KIOSK_GPIO": "mock",
                    "KIOSK_CAMERA": f"replay:{tmp_path / 'replay'}", "KIOSK_STATE_DIR": str(tmp_path / "state"),
                    "NOTIFY_SOCKET": str(tmp_path / "n.sock"), "PYTHONUNBUFFERED": "1", **extra})
        self.process = subprocess.Popen([sys.executable, "-m", "kiosk", "run"], cwd=tmp_path, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)

    def messages_until(self, wanted: str) -> list[str]:
        """Notifications received until one equal to or starting with ``wanted`` (30 s at most)."""
        got = []
        while not any(m.startswith(wanted) for m in got):
            got.append(self.notify.recv(4096).decode())
        return got

    def wait_for_line(self, fragment: str, timeout: float = 30) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.output.append(line)
            if fragment in line:
                return True
        return False

    def stop(self, timeout: float = 20) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.process.kill()
            self.process.wait()
            self.notify.close()
            self.reader.join(10)
            self.process.stdout.close()
            while not self.lines.empty():
                self.output.append(self.lines.get())


def test_kiosk_run_serves_the_page_notifies_systemd_and_stops_on_sigterm(tmp_path):
    skewed = SandboxState(clock=lambda: time.time() + 600)   # the API's clock is 10 minutes ahead
    with SandboxServer(skewed) as api:
        daemon = Daemon(tmp_path, api.url, WATCHDOG_USEC="400000")
        try:
            assert daemon.messages_until("READY=1")[-1].startswith("READY=1")
            answer = requests.get(f"http://127.0.0.1:{daemon.port}/healthz", timeout=10)
            assert answer.status_code == 200 and answer.json() == {"status": "ok"}
            assert "WATCHDOG=1" in daemon.messages_until("WATCHDOG=1")
            assert daemon.wait_for_line("min behind the API's")
        finally:
            code = daemon.stop()
        assert code == 0, "".join(daemon.output)
    output = "".join(daemon.output)
    assert "teacher page on http://127.0.0.1:" in output and "stopped." in output
    assert "Traceback" not in output


def test_kiosk_run_starts_without_a_camera_or_reachable_api(tmp_path):
    daemon = Daemon(tmp_path, "http://127.0.0.1:9/api", KIOSK_CAMERA=f"replay:{tmp_path / 'missing'}")
    try:
        assert daemon.messages_until("READY=1")
        assert requests.get(f"http://127.0.0.1:{daemon.port}/healthz", timeout=10).status_code == 200
    finally:
        code = daemon.stop()
    assert code == 0, "".join(daemon.output)


def test_kiosk_run_says_so_when_the_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = Daemon(tmp_path, "http://127.0.0.1:9/api", KIOSK_PORT=str(port))
        code = daemon.process.wait(60)
        daemon.stop()
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in "".join(daemon.output)


# --- output and the error LED ------------------------------------------------------------------------
def test_log_records_become_short_stdout_lines_without_exception_text():
    import io
    import logging

    from kiosk.daemon import log_to

    out = io.StringIO()
    with log_to(out):
        logging.getLogger("kiosk.outbox").info("Outbox: %d mark(s) kept in the spool.", 2)
        logging.getLogger("some.library").info("chatter from a library")
        try:
            raise KeyError("00019880")
        except KeyError:
            logging.getLogger("kiosk.x").exception("Delivery failed.")
    logging.getLogger("kiosk.outbox").warning("after the block")
    assert out.getvalue().splitlines() == ["kiosk: Outbox: 2 mark(s) kept in the spool.",
                                           "kiosk: Delivery failed. (KeyError)"]


def test_an_unhealthy_outbox_shows_the_error_blink_and_the_camera_cannot_clear_it(tmp_path):
    from gpiozero.pins.mock import MockFactory

    from kiosk.daemon import recording_signal
    from kiosk.feedback import ERROR_CAMERA, Feedback

    settings = load_settings(env={"KIOSK_STATE_DIR": str(tmp_path), "KIOSK_GPIO": "mock"})
    factory = MockFactory()
    try:
        with Feedback(settings, pin_factory=factory) as feedback:
            show = recording_signal(feedback)
            show(False)                          # the outbox cannot deliver
            feedback.error(ERROR_CAMERA)
            feedback.clear_error(ERROR_CAMERA)   # what the pipeline does when frames flow again
            assert feedback.error_active
            show(True)
            assert not feedback.error_active and factory.pin(settings.led_red_pin).state is False
    finally:
        factory.reset()
        factory.close()
