"""Typed answers of the university API, parsed defensively from JSON.

Every ``from_json`` raises :class:`~kiosk.errors.MalformedResponse` naming the call and the field when
the answer is not what ``wiut-api.md`` says (a missing field, a wrong type, an HTML page, a
ProblemDetails body where a list was expected). It is lenient only where that is harmless: a ``null``
``faceEmbedders`` becomes ``""``, a numeric ``userId`` becomes ``str(value)``. It is strict where a
wrong value would do damage: ``classId`` and ``id`` must be integers (``True`` is not one).

Example::

    lessons = Lessons.from_json(response.json(), call="LessonsByParams")
    lessons.slots[0].start          # datetime.time(9, 0), or None when "time" cannot be parsed
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any

from kiosk.errors import MalformedResponse

_TIME_RANGE = re.compile(r"^\s*(\d{1,2})[:.](\d{2})\s*[-\u2013\u2014]\s*(\d{1,2})[:.](\d{2})\s*$")


def _fail(call: str, what: str) -> MalformedResponse:
    return MalformedResponse(f"The university API answered {call} with {what}.", call=call)


def _describe(value: Any) -> str:
    if isinstance(value, str) and value.lstrip().startswith("<"):
        return "an HTML page"
    if isinstance(value, dict) and "title" in value and "status" in value:
        return f"an error (ProblemDetails: {str(value.get('title'))[:80]})"
    return f"a {type(value).__name__}"


def require_object(data: Any, call: str, where: str = "the answer") -> dict[str, Any]:
    """``data`` as a JSON object, or MalformedResponse saying what came instead."""
    if not isinstance(data, dict):
        raise _fail(call, f"{_describe(data)} where {where} should be a JSON object")
    return data


def require_list(data: Any, call: str, where: str = "the answer") -> list[Any]:
    """``data`` as a JSON array, or MalformedResponse saying what came instead."""
    if not isinstance(data, list):
        raise _fail(call, f"{_describe(data)} where {where} should be a JSON array")
    return data


def field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], call: str) -> Any:
    """``obj[name]`` checked against ``kind`` (bool is never accepted as int)."""
    if name not in obj:
        raise _fail(call, f"no field {name!r}")
    value = obj[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise _fail(call, f"field {name!r} of type bool (expected {_names(kinds)})")
    if not isinstance(value, kinds):
        raise _fail(call, f"field {name!r} of type {type(value).__name__} (expected {_names(kinds)})")
    return value


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def parse_time_range(text: str) -> tuple[dt.time, dt.time] | None:
    """``"09:00 - 11:00"`` -> ``(time(9), time(11))``; None when the text is not such a range.

    Times are wall-clock times in the timetable's time zone (the ``timezone`` setting). A range whose
    end is not after its start (``"11:00 - 09:00"``) is None too: the kiosk then uses a maximum length.
    """
    match = _TIME_RANGE.match(text or "")
    if not match:
        return None
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        return None
    start, end = dt.time(h1, m1), dt.time(h2, m2)
    return (start, end) if end > start else None


@dataclasses.dataclass(frozen=True)
class Module:
    """A module the logged-in teacher teaches (``MyModulesStaff``)."""

    id: int
    name: str
    code: str

    @classmethod
    def from_json(cls, data: Any, call: str = "MyModulesStaff") -> Module:
        obj = require_object(data, call, "a module")
        return cls(id=field(obj, "id", int, call), name=field(obj, "name", str, call),
                   code=field(obj, "code", str, call))


@dataclasses.dataclass(frozen=True)
class Slot:
    """A weekly timetable slot (a lesson, ``guidID``). ``start``/``end`` are None when ``time`` is unparsable."""

    day_of_week: str
    user: str
    time: str
    guid: str
    start: dt.time | None = None
    end: dt.time | None = None

    @classmethod
    def from_json(cls, data: Any, call: str = "LessonsByParams") -> Slot:
        obj = require_object(data, call, "a slot")
        text = field(obj, "time", (str, type(None)), call) or ""
        span = parse_time_range(text)
        return cls(day_of_week=field(obj, "dayOfWeek", (str, type(None)), call) or "",
                   user=field(obj, "user", (str, type(None)), call) or "",
                   time=text, guid=field(obj, "guidID", str, call),
                   start=span[0] if span else None, end=span[1] if span else None)


@dataclasses.dataclass(frozen=True)
class AttClass:
    """One teaching week of a slot; attendance is recorded per ``class_id``."""

    class_id: int
    teaching_week: str
    teaching_type: str

    @classmethod
    def from_json(cls, data: Any, call: str = "LessonsByParams") -> AttClass:
        obj = require_object(data, call, "an attClass")
        return cls(class_id=field(obj, "classId", int, call),
                   teaching_week=field(obj, "teachingWeek", (str, type(None)), call) or "",
                   teaching_type=field(obj, "teachingType", (str, type(None)), call) or "")


@dataclasses.dataclass(frozen=True)
class Lessons:
    """``LessonsByParams``: the module's slots of one teaching type and their teaching weeks."""

    slots: tuple[Slot, ...]
    att_classes: tuple[AttClass, ...]

    @classmethod
    def from_json(cls, data: Any, call: str = "LessonsByParams") -> Lessons:
        obj = require_object(data, call)
        slots = require_list(field(obj, "slots", list, call), call, "slots")
        classes = require_list(field(obj, "attClasses", list, call), call, "attClasses")
        return cls(slots=tuple(Slot.from_json(s, call) for s in slots),
                   att_classes=tuple(AttClass.from_json(c, call) for c in classes))


@dataclasses.dataclass(frozen=True)
class RosterStudent:
    """One student of a class as ``StudentsByLesson`` answers it.

    ``confidence`` is the stored mark: 51-100 recognised by a camera, 105 present by hand, -1 absent
    by hand, anything else (0) no mark yet. ``is_attended`` is informational only. ``face_embedders``
    is the stored string for the requested method, ``""`` when none.
    """

    user_id: str
    full_name: str
    is_attended: bool
    confidence: int
    face_embedders: str

    @classmethod
    def from_json(cls, data: Any, call: str = "StudentsByLesson") -> RosterStudent:
        obj = require_object(data, call, "a student")
        user_id = field(obj, "userId", (str, int), call)
        return cls(user_id=str(user_id),
                   full_name=field(obj, "fullName", (str, type(None)), call) or "",
                   # null (a nullable column upstream) means "no mark", not a broken roster
                   is_attended=bool(field(obj, "isAttended", (bool, type(None)), call)),
                   confidence=field(obj, "confidence", (int, type(None)), call) or 0,
                   face_embedders=field(obj, "faceEmbedders", (str, type(None)), call) or "")

    def __repr__(self) -> str:
        # Names and IDs stay out of logs and tracebacks.
        return f"RosterStudent(confidence={self.confidence}, is_attended={self.is_attended}, ...)"


def parse_modules(data: Any) -> list[Module]:
    """The ``MyModulesStaff`` answer as a list of :class:`Module`."""
    return [Module.from_json(m) for m in require_list(data, "MyModulesStaff")]


def parse_roster(data: Any) -> list[RosterStudent]:
    """The ``StudentsByLesson`` answer as a list of :class:`RosterStudent`."""
    return [RosterStudent.from_json(s) for s in require_list(data, "StudentsByLesson")]
