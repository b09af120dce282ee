"""What every reliability suite needs: the demo university on loopback, the kiosk wired as ``kiosk run`` wires
it (``kiosk.daemon.Services`` + waitress, the real engine, pipeline and outbox), a page client speaking the
JSON API, and a results folder for the figures.

Everything listens on 127.0.0.1 and stops by itself. Nothing here writes outside the test's folders.

Example::

    world = DemoWorld.create(demo_embeddings(settings, engine), now)   # the demo class, enrolled
    with SandboxServer(world.state) as api:
        with KioskUnderTest(kiosk_settings(settings, api.url, tmp), engine) as kiosk, Page(kiosk.url) as page:
            page.login()
            page.start(world.demo)
            world.figures(world.demo.class_id, set(world.demo.expected_present))
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from kiosk import demo_data
from kiosk.config import Settings
from tests import helpers
from tests.helpers import free_port

RESULTS_ENV = "RELIABILITY_RESULTS"  # folder for the suites' JSON figures (default: <tmp>/kiosk-reliability)
DEFAULT_RESULTS = Path(tempfile.gettempdir()) / "kiosk-reliability"  # read once: tests may move tempfile's folder


# --- figures ------------------------------------------------------------------------------------------
def results_dir() -> Path:
    """The folder the suites write their figures to (made on demand)."""
    folder = Path(os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def record(suite: str, key: str, figures: dict[str, Any]) -> Path:
    """Merge ``figures`` under ``key`` into ``<results>/<suite>.json`` (one JSON object per suite)."""
    path = results_dir() / f"{suite}.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[key] = {**figures, "recordedAt": datetime.now().astimezone().isoformat(timespec="seconds")}
    path.write_text(json.dumps(data, indent=2, sort_keys=True))
    return path


def wait_until(condition: Callable[[], Any], timeout: float, every: float = 0.2) -> bool:
    """:func:`tests.helpers.wait_until`, polling less often: most conditions here ask the page over HTTP."""
    return helpers.wait_until(condition, timeout, every)


# --- the demo university --------------------------------------------------------------------------
class RecordingClient:
    """Stands in for WiutClient during enrolment: keeps what SetEmbedding would have stored."""

    def __init__(self) -> None:
        self.stored: dict[str, tuple[str, str]] = {}

    def set_embedding(self, user_id: str, value: str, method: str) -> None:
        self.stored[user_id] = (value, method)


def demo_embeddings(settings: Settings, engine: Any) -> dict[str, tuple[str, str]]:
    """Enrol the demo class once through the real engine; userId -> (faceEmbeding, method)."""
    client = RecordingClient()
    refused = demo_data.enrol_demo_students(settings, client, engine)
    assert not refused, refused
    return client.stored


@dataclasses.dataclass(frozen=True)
class Write:
    """One SetAttendanceStudent the sandbox accepted; ``at`` is epoch seconds."""

    class_id: int
    user_id: str
    confidence: int
    at: float


class DemoWorld:
    """The demo university (kiosk.demo_data) with every accepted mark and every issued token recorded."""

    def __init__(self, state: Any, demo: demo_data.DemoClass):
        self.state, self.demo = state, demo
        self.writes: list[Write] = []
        self.tokens: list[str] = []
        self._lock = threading.Lock()
        set_mark, access, refresh = state.set_mark, state._access_token, state._refresh_token

        def recording_set_mark(class_id: int, user_id: str, confidence: int) -> None:
            with self._lock:
                self.writes.append(Write(class_id, user_id, confidence, time.time()))
            set_mark(class_id, user_id, confidence)

        def keep(make: Callable[[str], str]) -> Callable[[str], str]:
            def issue(username: str) -> str:
                token = make(username)
                self.tokens.append(token)
                return token
            return issue

        state.set_mark = recording_set_mark          # the sandbox app calls state.set_mark
        state._access_token, state._refresh_token = keep(access), keep(refresh)

    @classmethod
    def create(cls, embeddings: dict[str, tuple[str, str]], now: datetime) -> DemoWorld:
        state, demo = demo_data.build_state(now)
        for user_id, (value, method) in embeddings.items():
            state.set_embedding(user_id, method, value)
        return cls(state, demo)

    def writes_for(self, class_id: int | None = None) -> list[Write]:
        with self._lock:
            return [w for w in self.writes if class_id is None or w.class_id == class_id]

    def delivered(self, class_id: int) -> set[str]:
        """Students the kiosk marked present by camera (51..100) in ``class_id``."""
        return {w.user_id for w in self.writes_for(class_id) if 50 < w.confidence <= 100}

    def figures(self, class_id: int, expected: set[str]) -> dict[str, Any]:
        """Marks expected vs delivered, duplicates (accepted writes beyond the first per student), wrong marks."""
        writes = self.writes_for(class_id)
        per_user: dict[str, int] = {}
        for w in writes:
            per_user[w.user_id] = per_user.get(w.user_id, 0) + 1
        delivered = self.delivered(class_id)
        wrong = sorted({w.user_id for w in writes if w.user_id not in expected or not 50 < w.confidence <= 100})
        return {"expected": len(expected), "delivered": len(delivered & expected),
                "missing": len(expected - delivered), "duplicates": sum(n - 1 for n in per_user.values()),
                "wrong": len(wrong), "posts_accepted": len(writes),
                "posts_tried": self.state.count("SetAttendanceStudent")}

    def names_and_ids(self) -> list[str]:
        """Every student's ID and full name (for output checks)."""
        return [*self.state.students, *self.state.students.values()]


# --- the kiosk as `kiosk run` wires it --------------------------------------------------------------
def kiosk_settings(base: Settings, api_url: str, folder: Path, **changes: Any) -> Settings:
    """``base`` pointed at the sandbox, with the demo replay camera, mock GPIO and a state folder."""
    replay = demo_data.build_replay(base)
    state_dir = folder / "state"
    return base.replace(**{"api_url": api_url, "camera": f"replay:{replay}", "replay_loop": False, "gpio": "mock",
                           "host": "127.0.0.1", "port": free_port(), "state_dir": str(state_dir), **changes})


class KioskUnderTest:
    """``Services`` (kiosk, outbox, bus, LED/buzzer on mock pins, pipeline factory) + the page on waitress.

    A context manager; ``close()`` is idempotent and stops in ``kiosk run``'s order.
    """

    def __init__(self, settings: Settings, engine: Any, *, outbox_options: dict[str, Any] | None = None):
        from kiosk.daemon import Services, WaitressServer, limit_malloc_arenas

        limit_malloc_arenas()  # as `kiosk run` does first
        from kiosk.web import create_app

        self.settings = settings
        self.services = Services(settings, engine=engine, outbox_options=outbox_options).build()
        try:
            self.server = WaitressServer(create_app(self.services.kiosk), settings)
        except BaseException:
            self.services.close()
            raise
        self.url = f"http://127.0.0.1:{self.server.port}"
        self._thread = threading.Thread(target=self.server.run, name="kiosk-web", daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def kiosk(self) -> Any:
        return self.services.kiosk

    @property
    def pipeline(self) -> Any:
        return self.services.watch.pipeline

    def alive(self) -> bool:
        """The page answers /healthz and its server thread runs."""
        try:
            return self._thread.is_alive() and requests.get(f"{self.url}/healthz", timeout=10).status_code == 200
        except requests.RequestException:
            return False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.server.stop_listening()
        self.services.close()
        self.server.close()
        self._thread.join(10)

    def __enter__(self) -> KioskUnderTest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page(requests.Session):
    """The teacher page's JSON calls (login, start, status, end) with the CSRF header kept."""

    def __init__(self, url: str, timeout: float = 60):
        super().__init__()
        self.base, self.timeout = url, timeout

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return self.request(method, f"{self.base}{path}", **kwargs)

    def login(self, username: str = demo_data.DEMO_USERNAME, password: str = demo_data.DEMO_PASSWORD,
              *, tries: int = 1) -> requests.Response:
        """Log in (a teacher retries a 502/503 a few times); keeps the CSRF token for later calls."""
        for _ in range(tries):
            answer = self.call("POST", "/api/login", json={"username": username, "password": password})
            if answer.status_code == 200:
                self.headers["X-CSRF-Token"] = answer.json()["csrfToken"]
                break
            if answer.status_code not in (502, 503):
                break
            time.sleep(0.5)
        return answer

    def start(self, demo: demo_data.DemoClass, *, tries: int = 1) -> requests.Response:
        body = {"lessonGuid": demo.lesson_guid, "classId": demo.class_id, "moduleId": demo.module_id,
                "teachingType": demo.teaching_type}
        for _ in range(tries):
            answer = self.call("POST", "/api/session", json=body)
            if answer.status_code not in (502, 503):
                break
            time.sleep(0.5)
        return answer

    def status(self) -> dict[str, Any]:
        return self.call("GET", "/api/status").json()

    def end(self) -> requests.Response:
        return self.call("DELETE", "/api/session")


# --- `kiosk run` as a subprocess -------------------------------------------------------------------
class KioskProcess:
    """``python -m kiosk run`` with a clean KIOSK_* environment (plus ``env``), optionally under ``prefix``
    (e.g. strace); everything it prints (stdout and stderr) is collected in ``output``."""

    def __init__(self, folder: Path, env: dict[str, str], prefix: tuple[str, ...] = ()):
        self.port = free_port()
        (folder / "kiosk.toml").write_text("")
        base = {k: v for k, v in os.environ.items() if not k.startswith(("KIOSK_", "NOTIFY_", "WATCHDOG_"))}
        base.update({"KIOSK_CONFIG": str(folder / "kiosk.toml"), "KIOSK_HOST": "127.0.0.1",
                     "KIOSK_PORT": str(self.port), "KIOSK_GPIO": "mock", "PYTHONUNBUFFERED": "1", **env})
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([*prefix, sys.executable, "-m", "kiosk", "run", "--no-clock-check"],
                                        cwd=folder, env=base, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)

    def wait_ready(self, timeout: float = 60) -> bool:
        def up() -> bool:
            try:
                return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False
        return wait_until(up, timeout, every=0.3)

    def kiosk_pid(self) -> int:
        """The kiosk's own process id (under a prefix such as strace it is the prefix's child)."""
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        return int(children[0]) if children else pid

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM to the kiosk, wait (then kill); the exit code (a tracer passes the kiosk's on)."""
        if self.process.poll() is None:
            os.kill(self.kiosk_pid(), signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            self._reader.join(10)
            self.process.stdout.close()

    def text(self) -> str:
        return "".join(self.output)
