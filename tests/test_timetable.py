"""Which slot the page preselects, which week is the latest, when a started class ends, what its header says."""

from __future__ import annotations

import datetime as dt

from kiosk.timetable import choose_lesson, ends_at_for, lesson_info, week_number
from kiosk.wiut.models import AttClass, Lessons, Module, Slot, parse_time_range
from tests.test_web_api import MONDAY_0930


def slot(day: str, time: str, user: str, guid: str) -> Slot:
    span = parse_time_range(time)
    return Slot(day_of_week=day, user=user, time=time, guid=guid,
                start=span[0] if span else None, end=span[1] if span else None)


LESSONS = Lessons(
    slots=(slot("Tuesday", "09:00 - 11:00", "teacher", "tue"),
           slot("Monday", "09:00 - 11:00", "someone.else", "mon-other"),
           slot("Monday", "09:00 - 11:00", "teacher", "mon-own"),
           slot("Monday", "TBA", "teacher", "tba")),
    att_classes=(AttClass(1, "TW9", "Seminar 1"), AttClass(2, "TW10", "Seminar 1"), AttClass(3, "TW1", "Seminar 1")),
)


def test_the_running_own_slot_comes_first_and_the_latest_week_is_chosen():
    choice = choose_lesson(LESSONS, teacher="Teacher", now=MONDAY_0930)
    assert [s.guid for s in choice.slots][:2] == ["mon-own", "mon-other"]
    assert choice.preselected_guid == "mon-own"
    assert choice.preselected_class_id == 2                      # TW10 beats TW9 (numbers, not text)
    assert [w.teaching_week for w in choice.weeks] == ["TW10", "TW9", "TW1"]


def test_a_slot_starting_within_15_minutes_is_chosen_but_not_one_an_hour_away():
    soon = choose_lesson(LESSONS, teacher="teacher", now=MONDAY_0930.replace(hour=8, minute=50))
    assert soon.preselected_guid == "mon-own" and soon.slots[0].starts_soon
    early = choose_lesson(LESSONS, teacher="teacher", now=MONDAY_0930.replace(hour=8, minute=0))
    assert early.preselected_guid is None
    assert early.slots[0].own                                    # own slots still come first


def test_nothing_is_preselected_when_the_module_has_no_slots_or_weeks():
    choice = choose_lesson(Lessons(slots=(), att_classes=()), teacher="teacher", now=MONDAY_0930)
    assert choice.slots == [] and choice.preselected_guid is None and choice.preselected_class_id is None


def test_week_names_without_a_number_sort_last():
    assert week_number("TW12") == 12 and week_number("Week 3") == 3 and week_number("intro") == -1


def test_a_class_ends_at_the_slot_end_plus_grace_else_after_the_maximum():
    own = LESSONS.slots[2]
    assert ends_at_for(own, MONDAY_0930, grace_minutes=15, max_minutes=180) == MONDAY_0930.replace(hour=11, minute=15)
    tuesday = MONDAY_0930 + dt.timedelta(days=1)
    assert ends_at_for(own, tuesday, grace_minutes=15, max_minutes=180) == tuesday + dt.timedelta(minutes=180)
    late = MONDAY_0930.replace(hour=11, minute=20)
    assert ends_at_for(own, late, grace_minutes=15, max_minutes=60) == late + dt.timedelta(minutes=60)
    assert ends_at_for(None, MONDAY_0930, grace_minutes=15, max_minutes=90) == MONDAY_0930 + dt.timedelta(minutes=90)
    tba = LESSONS.slots[3]
    assert ends_at_for(tba, MONDAY_0930, grace_minutes=15, max_minutes=90) == MONDAY_0930 + dt.timedelta(minutes=90)


def test_the_header_names_module_type_slot_and_week():
    info = lesson_info(Module(785, "Computer Vision", "6CS012"), 1, LESSONS.slots[2], LESSONS, 2)
    assert info.to_json() == {"moduleCode": "6CS012", "moduleName": "Computer Vision", "teachingType": "Seminar",
                              "dayOfWeek": "Monday", "time": "09:00 - 11:00", "teachingWeek": "TW10"}
    unknown = lesson_info(None, None, None, None, 46703).to_json()
    assert set(unknown.values()) == {None}
