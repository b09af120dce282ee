"""The spool of undelivered marks: ``<state_dir>/outbox-spool.json``, the only file the kiosk writes.

Format (version 1)::

    {"version": 1,
     "marks": [{"userId": "00019880", "classId": 46703, "confidence": 105,
                "teacher": "teacher", "created": 1764835200.0}]}

``created`` is wall-clock seconds since the epoch. No names, images, tokens or passwords. The file is
written atomically (a temporary file in the same folder, fsync, ``os.replace``) with mode 0600; a
missing file means "nothing spooled"; an unreadable one is reported and ignored (never a crash).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kiosk.errors import SpoolError
from kiosk.roster import mark_kind

SPOOL_NAME = "outbox-spool.json"
VERSION = 1
KEYS = frozenset({"userId", "classId", "confidence", "teacher", "created"})

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, repr=False)
class Mark:
    """One attendance mark to send: ``confidence`` 51..100 (camera), 105 or -1 (by hand).

    ``teacher`` is the username whose tokens send it; ``created`` is wall-clock epoch seconds.
    """

    class_id: int
    user_id: str
    confidence: int
    teacher: str
    created: float

    @property
    def key(self) -> tuple[int, str]:
        """Marks with the same key replace each other (the newest wins)."""
        return (self.class_id, self.user_id)

    def __repr__(self) -> str:
        # Student IDs and usernames stay out of logs and tracebacks.
        return f"Mark(class_id={self.class_id}, confidence={self.confidence}, ...)"


def mark_to_json(mark: Mark) -> dict[str, Any]:
    return {"userId": mark.user_id, "classId": mark.class_id, "confidence": mark.confidence,
            "teacher": mark.teacher, "created": mark.created}


def mark_from_json(obj: Any) -> Mark | None:
    """The mark in one spool entry, or None when the entry is malformed."""
    if not isinstance(obj, dict) or set(obj) != KEYS:
        return None
    class_id, confidence, created = obj["classId"], obj["confidence"], obj["created"]
    if any(isinstance(v, bool) for v in (class_id, confidence, created)):
        return None
    if not (isinstance(class_id, int) and isinstance(confidence, int) and isinstance(created, int | float)):
        return None
    if not (isinstance(obj["userId"], str) and obj["userId"] and isinstance(obj["teacher"], str) and obj["teacher"]):
        return None
    return Mark(class_id, obj["userId"], confidence, obj["teacher"], float(created))


def read(path: Path) -> list[Mark]:
    """The spooled marks; [] when the file is missing or unreadable (reported on stdout, file left as is)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.warning("Spool: %s cannot be read (%s); it is ignored.", path, type(exc).__name__)
        return []
    entries = data.get("marks") if isinstance(data, dict) and data.get("version") == VERSION else None
    if not isinstance(entries, list):
        log.warning("Spool: %s is not a version %d spool; it is ignored.", path, VERSION)
        return []
    marks = [m for m in map(mark_from_json, entries) if m is not None]
    if len(marks) != len(entries):
        log.warning("Spool: %d malformed entr(ies) skipped.", len(entries) - len(marks))
    return marks


def write(path: Path, marks: Iterable[Mark]) -> None:
    """Replace the spool with ``marks`` atomically (mode 0600); raises :class:`SpoolError`."""
    text = json.dumps({"version": VERSION, "marks": [mark_to_json(m) for m in marks]}, indent=1)
    tmp = None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".outbox-spool.", suffix=".tmp")  # mode 0600
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise SpoolError(f"The spool of undelivered marks cannot be written ({exc.strerror or exc}).") from exc


def remove(path: Path) -> None:
    """Delete the spool (nothing is left to deliver); a missing file is fine. Raises :class:`SpoolError`."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise SpoolError(f"The spool of undelivered marks cannot be removed ({exc.strerror or exc}).") from exc


def kept(older: Mark, newer: Mark) -> Mark:
    """Which of two marks of the same student to send: the newer one, except that a camera mark (51-100)
    never replaces a mark by hand (105 / -1) (``wiut-api.md``, "Attendance confidence")."""
    if mark_kind(older.confidence) == "manual" and mark_kind(newer.confidence) == "camera":
        return older
    return newer


def merge(older: Iterable[Mark], newer: Iterable[Mark]) -> list[Mark]:
    """``older`` and ``newer`` marks, one per (classId, userId), the one :func:`kept` chooses for each."""
    by_key = {m.key: m for m in older}
    for mark in newer:
        old = by_key.pop(mark.key, None)
        by_key[mark.key] = mark if old is None else kept(old, mark)
    return list(by_key.values())
