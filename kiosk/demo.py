"""``kiosk demo``: the whole kiosk on this machine, on real faces, in one command.

Starts the sandbox university API with demo data (kiosk.demo_data), enrols most of the demo class
through the real enrolment path, and runs the kiosk exactly as ``kiosk run`` does, with a replay camera
of students walking past the door and mock GPIO. Prints the page's URL and the demo login; Ctrl-C stops
everything. ``--exit-after N`` stops by itself (for tests and headless tries); ``--auto-start`` logs in
and starts the running class through the page's JSON API, as a teacher's three taps would.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from datetime import datetime

import requests

from kiosk import daemon, demo_data
from kiosk.model import assets


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address of the page (default: this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="port of the page (default 8080; 0 = any free)")
    parser.add_argument("--exit-after", type=float, metavar="SECONDS", help="stop by itself after SECONDS")
    parser.add_argument("--auto-start", action="store_true",
                        help="log in as the demo teacher and start the running class (no browser needed)")


def _prepare(settings) -> None:
    problems = assets.fetch_models(settings.models_dir, settings.cache_dir)
    if problems:
        raise SystemExit("\n".join(problems))
    from kiosk import datasets

    datasets.fetch_all(settings, say=print)


def _auto_start(url: str, demo: demo_data.DemoClass, stop: threading.Event) -> None:
    """Log in and start the demo class through the JSON API, like the page does."""
    with requests.Session() as http:
        for _ in range(100):
            if stop.is_set():
                return
            try:
                if http.get(f"{url}/healthz", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        me = http.post(f"{url}/api/login", json={"username": demo_data.DEMO_USERNAME,
                                                 "password": demo_data.DEMO_PASSWORD}, timeout=30).json()
        answer = http.post(f"{url}/api/session", headers={"X-CSRF-Token": me["csrfToken"]}, timeout=60,
                           json={"lessonGuid": demo.lesson_guid, "classId": demo.class_id,
                                 "moduleId": demo.module_id, "teachingType": demo.teaching_type})
        print(f"demo: class started ({answer.status_code}).", flush=True)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def run_command(args, settings) -> int:
    from kiosk.model.engine import Engine
    from kiosk.wiut.client import WiutClient
    from kiosk.wiut.sandbox import SandboxServer

    started = time.monotonic()
    if args.port == 0:
        args.port = _free_port(args.host)
    _prepare(settings)
    state, demo = demo_data.build_state(datetime.now(settings.tz))
    replay = demo_data.build_replay(settings)
    stop = threading.Event()
    with SandboxServer(state) as sandbox, tempfile.TemporaryDirectory(prefix="kiosk-demo-") as state_dir:
        with Engine.from_settings(settings) as engine, WiutClient(sandbox.url) as client:
            client.login(demo_data.DEMO_USERNAME, demo_data.DEMO_PASSWORD)
            refused = demo_data.enrol_demo_students(settings, client, engine)
            client.logout()
        if refused:
            print(f"demo: {len(refused)} demo photo(s) were refused: {sorted(set(refused))}", file=sys.stderr)
        kiosk_settings = settings.replace(api_url=sandbox.url, camera=f"replay:{replay}", replay_loop=False,
                                          gpio="mock", host=args.host, port=args.port, state_dir=state_dir)
        print(f"demo: set-up took {time.monotonic() - started:.1f} s; sandbox API on {sandbox.url}", flush=True)
        print(f"demo: log in as {demo_data.DEMO_USERNAME!r} with password {demo_data.DEMO_PASSWORD!r}; "
              "the class running now is preselected: press Start.", flush=True)
        if args.exit_after:
            timer = threading.Timer(args.exit_after, stop.set)
            timer.daemon = True
            timer.start()
        if args.auto_start:
            url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '') else args.host}:{args.port}"
            threading.Thread(target=_auto_start, args=(url, demo, stop), daemon=True).start()
        return daemon.run_command(argparse.Namespace(no_clock_check=True), kiosk_settings, stop=stop)
