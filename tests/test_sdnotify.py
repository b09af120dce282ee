"""sd_notify over a datagram socket bound in tmp_path, and the watchdog policy that feeds it."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from kiosk.daemon import WatchdogFeeder
from kiosk.sdnotify import Notifier, watchdog_interval


@pytest.fixture
def systemd(tmp_path):
    """A stand-in for systemd's notification socket; ``systemd.messages()`` drains what arrived."""
    path = tmp_path / "n.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)

    class Listener:
        address = str(path)

        @staticmethod
        def messages() -> list[str]:
            out = []
            while True:
                try:
                    out.append(sock.recv(4096).decode())
                except BlockingIOError:
                    return out

    yield Listener
    sock.close()


def test_ready_watchdog_status_and_stopping_reach_systemd(systemd):
    with Notifier(systemd.address) as notifier:
        assert notifier.enabled
        assert notifier.ready("Teacher page listening")
        assert notifier.watchdog()
        assert notifier.status("Class running;\n camera running")
        assert notifier.stopping()
    assert systemd.messages() == ["READY=1\nSTATUS=Teacher page listening", "WATCHDOG=1",
                                  "STATUS=Class running; camera running", "STOPPING=1"]


def test_the_socket_comes_from_the_environment(systemd, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", systemd.address)
    with Notifier() as notifier:
        notifier.ready()
    assert systemd.messages() == ["READY=1"]


def test_abstract_namespace_addresses_work():
    name = f"kiosk-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        with Notifier("@" + name) as notifier:
            assert notifier.watchdog()
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_outside_systemd_every_call_is_a_quiet_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False
    notifier.close()
    notifier.close()


def test_a_vanished_socket_is_counted_not_raised(tmp_path):
    notifier = Notifier(str(tmp_path / "gone.sock"))
    assert notifier.watchdog() is False
    assert notifier.errors == 1
    notifier.close()


@pytest.mark.parametrize(("env", "expected"), [
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_watchdog_interval_is_half_of_systemds_period(env, expected):
    assert watchdog_interval(env) == expected


class FakePipeline:
    """A pipeline whose loop last ticked at ``last_tick`` on a clock the test moves."""

    def __init__(self):
        self.now, self.last_tick, self.running = 100.0, None, False

    def tick_age(self):
        return None if not self.running else self.now - self.last_tick


def test_the_watchdog_is_fed_only_while_the_camera_loop_ticks(systemd, capsys):
    pipeline = FakePipeline()
    with Notifier(systemd.address) as notifier:
        feeder = WatchdogFeeder(notifier, pipeline.tick_age, stall_seconds=20)
        assert feeder.feed()                      # idle, no class: healthy
        pipeline.running, pipeline.last_tick = True, 100.0
        pipeline.now = 110.0
        assert feeder.feed()                      # ticked 10 s ago
        assert systemd.messages() == ["WATCHDOG=1", "WATCHDOG=1"]
        pipeline.now = 125.0                      # hung: no tick for 25 s
        assert not feeder.feed()
        assert not feeder.feed()
        assert systemd.messages() == []
        assert capsys.readouterr().out.count("stalled") == 1
        pipeline.last_tick = 125.0                # ticking again
        assert feeder.feed()
        assert systemd.messages() == ["WATCHDOG=1"]
        assert "ticking again" in capsys.readouterr().out
