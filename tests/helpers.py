"""Small helpers shared by the test modules."""

from __future__ import annotations

import importlib
import socket
import time
from collections.abc import Callable
from typing import Any


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, every: float = 0.01) -> bool:
    """Poll ``condition`` every ``every`` s until it is truthy or ``timeout`` s passed; True when it became
    truthy. The timeout bounds the wait (only broken code reaches it); it is not a speed check."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(every)
    return bool(condition())


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition",
             every: float = 0.01) -> None:
    """:func:`wait_until`, raising AssertionError naming ``what`` when the timeout passes."""
    if not wait_until(condition, timeout, every):
        raise AssertionError(f"{what} not reached within {timeout:g} s")


def without_dlib(monkeypatch) -> None:
    """Make ``import dlib`` (through importlib, as the baseline imports it) fail as it does without the extra."""
    real = importlib.import_module

    def fake(name, *args):
        if name == "dlib":
            raise ImportError("No module named 'dlib'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
