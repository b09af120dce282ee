"""Parsing the API's answers: typed results, lenient where harmless, MalformedResponse naming the call."""

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.errors import MalformedResponse
from kiosk.wiut.models import Lessons, Module, RosterStudent, parse_modules, parse_roster, parse_time_range

LESSONS_EXAMPLE = {
    "slots": [{"dayOfWeek": "Monday", "user": "ab.teacher", "time": "09:00 - 11:00",
               "guidID": "a06c076b-f592-4596-9d64-7244e6d5e576"}],
    "attClasses": [{"classId": 46703, "teachingWeek": "TW1", "teachingType": "Seminar 1"},
                   {"classId": 46890, "teachingWeek": "TW2", "teachingType": "Seminar 1"}],
}
STUDENT = {"userId": "00019880", "fullName": "Invented Person", "isAttended": True, "confidence": 56,
           "faceEmbedders": ""}


def test_lessons_example_parses_into_typed_slots_and_classes():
    lessons = Lessons.from_json(LESSONS_EXAMPLE)
    slot = lessons.slots[0]
    assert (slot.day_of_week, slot.user, slot.guid) == ("Monday", "ab.teacher", LESSONS_EXAMPLE["slots"][0]["guidID"])
    assert (slot.start, slot.end) == (dt.time(9, 0), dt.time(11, 0))
    assert [c.class_id for c in lessons.att_classes] == [46703, 46890]
    assert lessons.att_classes[1].teaching_week == "TW2"


def test_modules_and_roster_parse():
    assert parse_modules([{"id": 785, "name": "Contract Law", "code": "4LLAW020C-n"}]) == [
        Module(785, "Contract Law", "4LLAW020C-n")]
    student = parse_roster([STUDENT])[0]
    assert (student.user_id, student.is_attended, student.confidence, student.face_embedders) == (
        "00019880", True, 56, "")


def test_roster_is_lenient_where_harmless():
    student = RosterStudent.from_json({**STUDENT, "faceEmbedders": None, "userId": 19880, "fullName": None})
    assert student.face_embedders == ""
    assert student.user_id == "19880"
    assert student.full_name == ""


def test_null_mark_fields_mean_no_mark_not_a_broken_roster():
    student = RosterStudent.from_json({**STUDENT, "confidence": None, "isAttended": None})
    assert (student.confidence, student.is_attended) == (0, False)


def test_repr_of_a_student_shows_no_name_or_id():
    text = repr(RosterStudent.from_json(STUDENT))
    assert "00019880" not in text and "Invented" not in text


@pytest.mark.parametrize("answer, words", [
    ("<!DOCTYPE html><html><body>Login</body></html>", "HTML page"),
    ({"type": "x", "title": "One or more validation errors occurred.", "status": 400, "errors": {}}, "ProblemDetails"),
    ([{k: v for k, v in STUDENT.items() if k != "confidence"}], "'confidence'"),
    ([{**STUDENT, "isAttended": "true"}], "'isAttended'"),
    ([{**STUDENT, "confidence": "56"}], "'confidence'"),
    ([{**STUDENT, "confidence": True}], "'confidence'"),
    (["00019880"], "a str"),
])
def test_malformed_roster_names_call_and_field(answer, words):
    with pytest.raises(MalformedResponse, match="StudentsByLesson") as caught:
        parse_roster(answer)
    assert words in str(caught.value)
    assert caught.value.call == "StudentsByLesson"


@pytest.mark.parametrize("class_id", ["46703", 46703.0, None, True])
def test_class_id_must_be_an_integer(class_id):
    bad = {**LESSONS_EXAMPLE, "attClasses": [{"classId": class_id, "teachingWeek": "TW1", "teachingType": "S"}]}
    with pytest.raises(MalformedResponse, match="'classId'"):
        Lessons.from_json(bad)


def test_lessons_without_slots_is_malformed():
    with pytest.raises(MalformedResponse, match=r"LessonsByParams.*'slots'"):
        Lessons.from_json({"attClasses": []})


def test_module_id_as_string_is_malformed():
    with pytest.raises(MalformedResponse, match=r"MyModulesStaff.*'id'"):
        parse_modules([{"id": "785", "name": "Contract Law", "code": "X"}])


@pytest.mark.parametrize("text, expected", [
    ("09:00 - 11:00", (dt.time(9), dt.time(11))),
    ("9:00-10:30", (dt.time(9), dt.time(10, 30))),
    (" 13.00 \u2013 14.50 ", (dt.time(13), dt.time(14, 50))),
    ("11:00 - 09:00", None),
    ("25:00 - 26:00", None),
    ("09:60 - 11:00", None),
    ("TBA", None),
    ("", None),
])
def test_slot_time_parsing(text, expected):
    assert parse_time_range(text) == expected


def test_unparsable_slot_time_keeps_the_text():
    slot = Lessons.from_json({**LESSONS_EXAMPLE, "slots": [{**LESSONS_EXAMPLE["slots"][0], "time": "TBA"}]}).slots[0]
    assert (slot.time, slot.start, slot.end) == ("TBA", None, None)


@settings(deadline=None)  # no timing assertions on a shared, noisy machine
@given(st.text(max_size=30))
def test_time_parsing_never_raises(text):
    span = parse_time_range(text)
    assert span is None or span[0] < span[1]
