"""A minimal ``sd_notify`` client: tell systemd the kiosk is ready, alive, or stopping.

systemd passes the socket in ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace) and,
with ``WatchdogSec=``, the watchdog period in ``$WATCHDOG_USEC`` (microseconds). Outside systemd both are
unset and every call is a harmless no-op that returns False. No dependencies: one AF_UNIX datagram socket.

Example::

    with Notifier() as notifier:
        notifier.ready("Listening on port 8080")
        notifier.watchdog()          # at least every watchdog_interval() seconds
        notifier.stopping()
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between two watchdog pings (half of systemd's ``WatchdogSec=``).

    None means systemd expects no pings: ``WATCHDOG_USEC`` is unset or invalid, or ``WATCHDOG_PID``
    names another process.
    """
    env = os.environ if env is None else env
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None


def _address(raw: str) -> str | bytes:
    # "@name" is Linux's abstract namespace: a leading NUL byte instead of a file.
    return b"\0" + raw[1:].encode() if raw.startswith("@") else raw


class Notifier:
    """Sends ``KEY=VALUE`` lines to systemd's notification socket.

    ``address`` None reads ``$NOTIFY_SOCKET``; an empty address (not under systemd) makes every
    call a no-op. Send failures are counted in ``errors`` and never raised: a missed ping must not
    take the kiosk down (systemd's watchdog will notice if it keeps happening).
    """

    def __init__(self, address: str | None = None):
        raw = os.environ.get("NOTIFY_SOCKET", "") if address is None else address
        self.address = _address(raw) if raw else None
        self.errors = 0
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` as one datagram; True when it was sent."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError:
            self.errors += 1
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (with an optional one-line status): startup is complete."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the service is alive and working."""
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """``STATUS=...``: a one-line status shown by ``systemctl status`` (no names, no IDs)."""
        return self.notify(f"STATUS={' '.join(text.split())}")

    def stopping(self) -> bool:
        """``STOPPING=1``: shutdown has begun."""
        return self.notify("STOPPING=1")

    def close(self) -> None:
        """Close the socket; safe to call twice."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
