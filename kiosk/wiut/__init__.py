"""The university attendance API: typed client, token handling, and a local sandbox of the API.

``from kiosk.wiut import WiutClient`` for the client; the sandbox (which imports Flask) is imported
only from :mod:`kiosk.wiut.sandbox`, so the kiosk does not load it unless asked.
"""

from kiosk.wiut.auth import TokenAuth
from kiosk.wiut.client import MANUAL_ABSENT, MANUAL_PRESENT, SEMINAR, WORKSHOP, WiutClient, valid_confidence
from kiosk.wiut.models import AttClass, Lessons, Module, RosterStudent, Slot, parse_time_range

__all__ = [
    "MANUAL_ABSENT",
    "MANUAL_PRESENT",
    "SEMINAR",
    "WORKSHOP",
    "AttClass",
    "Lessons",
    "Module",
    "RosterStudent",
    "Slot",
    "TokenAuth",
    "WiutClient",
    "parse_time_range",
    "valid_confidence",
]
