"""The status area of the teacher's page (``GET /api/status``), read from the kiosk's parts without locks.

Camera and recognition counters come from the running pipeline, pending and refused marks from the outbox
(only the logged-in teacher's own), the login's expiry and the clock check from the teacher's client, and
the last LED/buzzer signals from the feedback. Every part may be missing (no class, nobody logged in).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kiosk.errors import KioskError

CLOCK_SKEW_WARN_SECONDS = 120.0  # the kiosk warns when its clock and the university's differ by more
LOGIN_AGAIN = "The university login has expired: log in again to keep recording."


def status_view(*, owner: str | None, client: Any, pipeline: Any, class_running: bool, outbox: Any, feedback: Any,
                now: float) -> dict:
    """The ``GET /api/status`` JSON. ``owner`` is the teacher in control (survives lost tokens), ``client``
    their university client (None when the tokens are gone), ``now`` monotonic seconds (feedback ages)."""
    tokens_lost = owner is not None and (client is None or not client.logged_in)
    stats = _safe_stats(pipeline)
    skew = client.clock_skew() if client is not None else None
    login_needed = tokens_lost or _login_needed(outbox, owner)
    return {
        "teacher": owner,
        "classRunning": class_running,
        "camera": {"state": stats.get("camera_state", "off" if pipeline is None else "unknown"),
                   "error": stats.get("camera_error"), "fps": stats.get("camera_fps"),
                   "processedFps": stats.get("fps"),
                   "frames": stats.get("frames"), "dropped": stats.get("dropped")},
        "facesSeen": stats.get("faces_seen"),
        "lastRecognitionSecondsAgo": stats.get("last_recognition"),
        "pendingPosts": _count(outbox, "pending"),
        "deadLetters": _dead_letters(outbox, owner),
        "outboxHealthy": bool(getattr(outbox, "healthy", True)),
        "loginExpiresAt": _iso_from_epoch(client.login_expires_at if client is not None else None),
        "accessExpiresAt": _iso_from_epoch(client.access_expires_at if client is not None else None),
        "clockSkewSeconds": skew,
        "clockWarning": _skew_warning(skew),
        "feedback": _recent_feedback(feedback, now),
        "feedbackError": bool(getattr(feedback, "error_active", False)),
        "loginNeeded": login_needed,
        "loginMessage": LOGIN_AGAIN if login_needed else None,
    }


def _safe_stats(pipeline) -> dict:
    if pipeline is None:
        return {}
    try:
        return dict(pipeline.stats())
    except KioskError:
        return {}


def _count(outbox, name: str) -> int:
    if outbox is None:
        return 0
    return len(getattr(outbox, name)())


def _login_needed(outbox, teacher: str | None) -> bool:
    """True when the university refused ``teacher``'s tokens and their marks wait for a new login."""
    if outbox is None or teacher is None or not hasattr(outbox, "status"):
        return False
    return teacher in outbox.status().get("loginRequired", ())


def _dead_letters(outbox, teacher: str | None) -> list[dict]:
    """The refused marks of ``teacher`` only (other teachers' are not theirs to see); none when None."""
    if outbox is None or teacher is None:
        return []
    return [letter.to_json() for letter in outbox.dead_letters() if letter.mark.teacher == teacher]


def _iso_from_epoch(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _skew_warning(skew: float | None) -> str | None:
    if skew is None or abs(skew) <= CLOCK_SKEW_WARN_SECONDS:
        return None
    return (f"The kiosk's clock differs from the university's by {abs(skew) / 60:.0f} minutes: "
            "check time sync.")


def _recent_feedback(feedback, now: float) -> list[dict]:
    if feedback is None or not hasattr(feedback, "recent"):
        return []
    return [{"secondsAgo": round(now - t, 1), "signal": name} for t, name in list(feedback.recent())[-10:]]
