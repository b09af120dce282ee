"""One student of the running class: their mark as the API stores it, and their enrolment vectors.

The stored ``confidence`` is the state (``wiut-api.md``, "Attendance confidence"): 51-100 recognised by a
camera, 105 present by hand, -1 absent by hand, anything else no mark. ``isAttended`` is shown, never
acted on. A ``faceEmbedders`` string that is empty, malformed, foreign or corrupt makes the student
"not enrolled" with a plain reason; it never raises.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from kiosk.errors import EmbeddingFormatError, NotEnrolled
from kiosk.model.embedding_format import decode
from kiosk.wiut.models import RosterStudent

CAMERA_MIN, CAMERA_MAX = 51, 100
MANUAL_PRESENT, MANUAL_ABSENT = 105, -1
NO_MARK = 0

Decoder = Callable[..., np.ndarray]  # decode(text, *, method, dim) -> (k, dim)


def mark_kind(confidence: int) -> str | None:
    """``"camera"`` for 51..100, ``"manual"`` for 105 and -1, None for no mark."""
    if CAMERA_MIN <= confidence <= CAMERA_MAX:
        return "camera"
    if confidence in (MANUAL_PRESENT, MANUAL_ABSENT):
        return "manual"
    return None


def present_of(confidence: int) -> bool | None:
    """True (present), False (absent by hand) or None (no mark) for a stored confidence."""
    kind = mark_kind(confidence)
    if kind is None:
        return None
    return confidence != MANUAL_ABSENT


@dataclasses.dataclass(repr=False)
class StudentState:
    """A roster student during a class.

    ``confidence`` is the mark shown and acted on (0 = none); ``server_confidence`` what the API last
    said. ``source``: ``"camera"``/``"manual"`` when this kiosk made the mark in this class, ``"server"``
    when it was read from the roster (made elsewhere or before a restart), None without a mark.
    ``vectors`` is ``(k, dim)`` unit rows, None when not enrolled (``not_enrolled_reason`` says why).
    """

    user_id: str
    full_name: str
    is_attended: bool
    server_confidence: int
    confidence: int = NO_MARK
    source: str | None = None
    present: bool | None = None
    enrolled: bool = False
    not_enrolled_reason: str | None = None
    vectors: np.ndarray | None = None

    def __repr__(self) -> str:
        # Names and IDs stay out of logs and tracebacks.
        return f"StudentState(confidence={self.confidence}, source={self.source!r}, enrolled={self.enrolled})"

    @property
    def kind(self) -> str | None:
        """The kind of the current mark: ``"camera"``, ``"manual"`` or None."""
        return mark_kind(self.confidence)

    def set_mark(self, confidence: int, source: str | None) -> None:
        """Show ``confidence`` (0 = no mark) as made by ``source``."""
        self.confidence = confidence if mark_kind(confidence) else NO_MARK
        self.source = source if mark_kind(confidence) else None
        self.present = present_of(confidence)

    def set_vectors(self, vectors: np.ndarray | None, reason: str | None) -> None:
        self.vectors = vectors
        self.enrolled = vectors is not None
        self.not_enrolled_reason = None if vectors is not None else reason

    def to_json(self, pending_undo: float | None = None) -> dict[str, Any]:
        """The student's row in ``GET /api/session`` and in ``student`` events."""
        return {"userId": self.user_id, "fullName": self.full_name, "present": self.present,
                "confidence": self.confidence if self.kind else None, "source": self.source,
                "enrolled": self.enrolled, "isAttended": self.is_attended,
                "pendingUndo": None if pending_undo is None else round(pending_undo, 1),
                "notEnrolledReason": self.not_enrolled_reason}


def check_vectors(vectors: Any, dim: int) -> np.ndarray:
    """``vectors`` as a ``(k, dim)`` float32 array with k >= 1 and finite values; raises ValueError."""
    array = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] != dim:
        raise ValueError(f"Expected one or more vectors of dimension {dim}.")
    if not np.all(np.isfinite(array)):
        raise ValueError("The vectors contain NaN or infinite values.")
    return array


def decode_vectors(text: str, *, method: str, dim: int,
                   decoder: Decoder = decode) -> tuple[np.ndarray | None, str | None]:
    """(vectors, None) for a usable ``faceEmbedders`` string, else (None, the reason in a plain sentence)."""
    try:
        return check_vectors(decoder(text, method=method, dim=dim), dim), None
    except NotEnrolled:
        return None, "No face photo is enrolled for this student."
    except EmbeddingFormatError as exc:
        return None, str(exc)
    except (ValueError, TypeError, OverflowError):
        return None, "The stored face data cannot be read."


def from_roster(student: RosterStudent, *, method: str, dim: int, decoder: Decoder = decode) -> StudentState:
    """The state of one ``StudentsByLesson`` row; its mark, if any, has source ``"server"``."""
    state = StudentState(student.user_id, student.full_name, student.is_attended, student.confidence)
    state.set_mark(student.confidence, "server")
    state.set_vectors(*decode_vectors(student.face_embedders, method=method, dim=dim, decoder=decoder))
    return state
