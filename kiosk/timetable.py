"""The teacher's timetable as the page shows it: which slot runs now, which week is the latest, when a class ends.

Pure functions over the university's ``LessonsByParams`` answer (:class:`kiosk.wiut.models.Lessons`);
``now`` is always passed in (an aware datetime in the timetable's zone), so no rule here reads the clock.
The end of a started class is computed by :mod:`kiosk.attendance` (:func:`~kiosk.attendance.slot_end`,
:func:`~kiosk.attendance.class_end`), the one place that rule lives.

Example::

    choice = choose_lesson(client.lessons(785, 1), teacher="teacher", now=now)
    ends = ends_at_for(slot, now, grace_minutes=15, max_minutes=180)
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from kiosk.attendance import DAYS, class_end, slot_end, slot_window

SOON = timedelta(minutes=15)
TEACHING_TYPES = {1: "Seminar", 2: "Workshop"}


@dataclasses.dataclass(frozen=True)
class SlotView:
    """A timetable slot as the page shows it; ``running_now``/``starts_soon`` use the kiosk's clock."""

    guid: str
    day_of_week: str
    time: str
    user: str
    own: bool
    running_now: bool
    starts_soon: bool


@dataclasses.dataclass(frozen=True)
class WeekView:
    """One teaching week (an attClass) of the module."""

    class_id: int
    teaching_week: str
    teaching_type: str


@dataclasses.dataclass(frozen=True)
class LessonChoice:
    """Slots (teacher's own first, running ones first) and weeks (latest first) with the likely pick.

    ``preselected_guid`` is None when no slot runs now or starts within 15 minutes;
    ``preselected_class_id`` is None when the module has no teaching weeks.
    """

    slots: list[SlotView]
    weeks: list[WeekView]
    preselected_guid: str | None
    preselected_class_id: int | None


@dataclasses.dataclass(frozen=True)
class LessonInfo:
    """What a teacher recognises a running class by; a field is None when the kiosk was not told it."""

    module_code: str | None = None
    module_name: str | None = None
    teaching_type: str | None = None       # "Seminar" / "Workshop"
    day_of_week: str | None = None
    time: str | None = None                # "09:00 - 11:00" as the timetable writes it
    teaching_week: str | None = None       # "TW10"

    def to_json(self) -> dict[str, str | None]:
        """The ``lesson`` object of ``GET /api/session`` (camelCase keys)."""
        return {"moduleCode": self.module_code, "moduleName": self.module_name, "teachingType": self.teaching_type,
                "dayOfWeek": self.day_of_week, "time": self.time, "teachingWeek": self.teaching_week}


def _start_if_ahead(slot: Any, now: datetime) -> datetime | None:
    """Today's start of ``slot`` in ``now``'s zone while the slot has not ended yet; None when it is not today,
    is over or its time cannot be read (whether it is today and not over is :func:`slot_end`'s rule)."""
    window = slot_window(str(slot.time), str(slot.day_of_week), now.tzinfo, now)
    return window[0] if window is not None and now < window[1] else None


def week_number(week: str) -> int:
    """The number in a teaching week's name ("TW10" -> 10), -1 when it has none (sorts last)."""
    digits = "".join(ch for ch in str(week) if ch.isdigit())
    return int(digits) if digits else -1


def _slot_view(slot: Any, teacher: str, now: datetime) -> SlotView:
    start = _start_if_ahead(slot, now)
    running = start is not None and start <= now
    soon = start is not None and start - SOON <= now < start
    return SlotView(slot.guid, slot.day_of_week, slot.time, slot.user,
                    own=bool(teacher) and str(slot.user).lower() == teacher.lower(),
                    running_now=running, starts_soon=soon)


def _slot_order(view: SlotView, slot: Any) -> tuple:
    day = str(view.day_of_week).strip().lower()
    return (not (view.running_now or view.starts_soon), not view.own,
            DAYS.index(day) if day in DAYS else 7, getattr(slot, "start", None) or datetime.min.time())


def choose_lesson(lessons: Any, *, teacher: str, now: datetime) -> LessonChoice:
    """Sort a LessonsByParams answer for the page and preselect the slot running now and the latest week.

    A slot running now or starting within 15 minutes is preselected; among several, the teacher's own.
    """
    pairs = [(_slot_view(s, teacher, now), s) for s in lessons.slots]
    pairs.sort(key=lambda pair: _slot_order(*pair))
    slots = [view for view, _ in pairs]
    weeks = sorted((WeekView(int(c.class_id), c.teaching_week, c.teaching_type) for c in lessons.att_classes),
                   key=lambda w: (week_number(w.teaching_week), w.class_id), reverse=True)
    pick = next((v.guid for v in slots if v.running_now or v.starts_soon), None)
    return LessonChoice(slots, weeks, pick, weeks[0].class_id if weeks else None)


def ends_at_for(slot: Any, now: datetime, *, grace_minutes: int, max_minutes: int) -> datetime:
    """When a class started at ``now`` ends: today's slot end + grace while the slot has not ended, else
    ``now`` + max_minutes (also when ``slot`` is None or its time cannot be read)."""
    end = None if slot is None else slot_end(str(slot.time), str(slot.day_of_week), now.tzinfo, now)
    return class_end(now, end, grace_minutes=grace_minutes, max_minutes=max_minutes)


def lesson_info(module: Any, teaching_type: int | None, slot: Any, lessons: Any, class_id: int) -> LessonInfo:
    """The header of a running class from what the kiosk knows (any argument may be None)."""
    week = None
    if lessons is not None:
        week = next((c.teaching_week for c in lessons.att_classes if int(c.class_id) == int(class_id)), None)
    return LessonInfo(
        module_code=getattr(module, "code", None), module_name=getattr(module, "name", None),
        teaching_type=TEACHING_TYPES.get(teaching_type) if teaching_type is not None else None,
        day_of_week=getattr(slot, "day_of_week", None), time=getattr(slot, "time", None),
        teaching_week=week or None)
