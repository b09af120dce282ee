"""The sandbox API's state: timetable, rosters, marks, embeddings, tokens and fault knobs, in memory.

:class:`SandboxState` is what :mod:`kiosk.wiut.sandbox` serves over HTTP. Tests and the demo use its
Python API to add data and read back what the kiosk sent. Nothing is written to disk. Thread-safe.

Example::

    state = SandboxState()                            # the packaged fixture (demo teacher "teacher")
    guid = state.add_slot(785, 1, students=["00020104"])
    state.add_student("00020104", "Invented Person", slots=[guid])
    state.attendance(46703)["00019880"]               # Mark(is_attended=True, confidence=56)
"""

from __future__ import annotations

import collections
import dataclasses
import json
import random
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any

import jwt

ISSUER, AUDIENCE = "MyApp", "MyAppUsers"
MALFORMED_KINDS = ("html", "missing-field", "wrong-type", "empty")


class TokenRejected(Exception):
    """A bearer or refresh token is missing, forged, expired or revoked (the sandbox answers 401)."""


@dataclasses.dataclass(frozen=True)
class Mark:
    """A stored attendance mark as StudentsByLesson reports it."""

    is_attended: bool
    confidence: int


@dataclasses.dataclass
class SlotData:
    guid: str
    module_id: int
    teaching_type: int
    day_of_week: str
    user: str
    time: str
    students: list[str]


@dataclasses.dataclass
class ClassData:
    class_id: int
    module_id: int
    teaching_type: int
    teaching_week: str
    label: str


@dataclasses.dataclass
class Knobs:
    """Fault injection. ``latency`` is (min, max) seconds; ``unavailable_until`` is an epoch of ``clock``."""

    failure_rate: float = 0.0
    latency: tuple[float, float] = (0.0, 0.0)
    unavailable_until: float = 0.0
    unavailable_mode: str = "503"  # "503": answer 503 + Retry-After; "drop": close the connection unanswered
    malformed: dict[str, str] = dataclasses.field(default_factory=dict)  # call name -> MALFORMED_KINDS
    rotate_refresh: bool = False
    fail_next: int = 0  # the next N API calls are answered with fail_status (then this counts down)
    fail_status: int = 500  # 500, 503 or 429 (429 and 503 carry "Retry-After: 0")


def default_fixture() -> dict[str, Any]:
    """The packaged ``fixtures/sandbox.json`` as a dict."""
    text = resources.files("kiosk.wiut").joinpath("fixtures/sandbox.json").read_text(encoding="utf-8")
    return json.loads(text)


class SandboxState:
    """Everything the sandbox API knows. ``access_ttl``/``refresh_ttl`` are token lifetimes in seconds."""

    def __init__(self, data: dict[str, Any] | None = None, *, clock: Callable[[], float] = time.time,
                 access_ttl: float = 900, refresh_ttl: float = 30 * 86400, seed: int | None = None):
        self.clock = clock
        self.access_ttl, self.refresh_ttl = access_ttl, refresh_ttl
        self.knobs = Knobs()
        self.rng = random.Random(seed)
        self._lock = threading.RLock()
        self._secret = secrets.token_hex(32)
        self._refresh_jtis: set[str] = set()
        self.calls: collections.Counter[str] = collections.Counter()
        self.teachers: dict[str, dict[str, str]] = {}
        self.modules: dict[int, dict[str, Any]] = {}
        self.slots: dict[str, SlotData] = {}
        self.classes: dict[int, ClassData] = {}
        self.students: dict[str, str] = {}
        self.marks: dict[tuple[int, str], Mark] = {}
        self.embeddings: dict[tuple[str, str], str] = {}
        self.load(default_fixture() if data is None else data)

    # --- building data -----------------------------------------------------------------------
    def load(self, data: dict[str, Any]) -> None:
        """Add everything in a fixture dict (the shape of ``fixtures/sandbox.json``)."""
        for t in data.get("teachers", []):
            self.add_teacher(t["username"], t["password"], t.get("display", ""), sub=t.get("sub"))
        for m in data.get("modules", []):
            self.add_module(m["id"], m["name"], m["code"], teachers=m.get("teachers", ()))
        for s in data.get("students", []):
            self.add_student(s["userId"], s["fullName"])
        for group in data.get("lessons", []):
            for s in group["slots"]:
                self.add_slot(group["moduleId"], group["teachingType"], guid=s["guidID"], day_of_week=s["dayOfWeek"],
                              user=s["user"], time=s["time"], students=s.get("students", ()))
            for c in group["attClasses"]:
                self.add_class(group["moduleId"], group["teachingType"], class_id=c["classId"],
                               teaching_week=c["teachingWeek"], label=c["teachingType"])
        for a in data.get("attendance", []):
            self.marks[(a["classId"], a["userId"])] = Mark(a["isAttended"], a["confidence"])
        for e in data.get("embeddings", []):
            self.set_embedding(e["userId"], e["embedderMetod"], e["faceEmbeding"])

    def add_teacher(self, username: str, password: str, display: str = "", *, sub: str | None = None) -> None:
        with self._lock:
            self.teachers[username] = {"password": password, "display": display, "sub": sub or str(uuid.uuid4())}

    def add_module(self, module_id: int, name: str, code: str, *, teachers: Iterable[str] = ()) -> None:
        with self._lock:
            self.modules[module_id] = {"id": module_id, "name": name, "code": code, "teachers": set(teachers)}

    def add_student(self, user_id: str, full_name: str, *, slots: Iterable[str] = ()) -> None:
        """Add (or rename) a student and put them on the rosters of ``slots`` (slot guids)."""
        with self._lock:
            self.students[user_id] = full_name
            for guid in slots:
                if user_id not in self.slots[guid].students:
                    self.slots[guid].students.append(user_id)

    def add_slot(self, module_id: int, teaching_type: int, *, guid: str | None = None, day_of_week: str = "Monday",
                 user: str = "teacher", time: str = "09:00 - 11:00", students: Iterable[str] = ()) -> str:
        """Add a weekly slot of a module; returns its ``guidID``."""
        guid = guid or str(uuid.uuid4())
        with self._lock:
            self.slots[guid] = SlotData(guid, module_id, teaching_type, day_of_week, user, time, list(students))
        return guid

    def add_class(self, module_id: int, teaching_type: int, *, class_id: int | None = None,
                  teaching_week: str = "TW1", label: str = "Seminar 1") -> int:
        """Add a teaching week (``attClass``) of a module's teaching type; returns its ``classId``."""
        with self._lock:
            class_id = class_id if class_id is not None else max(self.classes, default=50000) + 1
            self.classes[class_id] = ClassData(class_id, module_id, teaching_type, teaching_week, label)
        return class_id

    # --- what the API reads and writes ---------------------------------------------------------
    def attendance(self, class_id: int) -> dict[str, Mark]:
        """Stored marks of a class by userId (students without a mark are absent from the dict)."""
        with self._lock:
            return {user: mark for (cid, user), mark in self.marks.items() if cid == class_id}

    def set_mark(self, class_id: int, user_id: str, confidence: int) -> None:
        with self._lock:
            self.marks[(class_id, user_id)] = Mark(confidence != -1, confidence)

    def embedding(self, user_id: str, method: str) -> str | None:
        """The stored ``faceEmbeding`` of (user, method); None when none was set."""
        with self._lock:
            return self.embeddings.get((user_id, method))

    def set_embedding(self, user_id: str, method: str, value: str) -> None:
        """Replace the stored string of (user, method) (the sandbox's assumption: SetEmbedding replaces)."""
        with self._lock:
            self.embeddings[(user_id, method)] = value

    def modules_of(self, username: str) -> list[dict[str, Any]]:
        with self._lock:
            return [{"id": m["id"], "name": m["name"], "code": m["code"]}
                    for m in self.modules.values() if username in m["teachers"]]

    def lessons(self, module_id: int, teaching_type: int) -> dict[str, Any]:
        with self._lock:
            slots = [s for s in self.slots.values() if (s.module_id, s.teaching_type) == (module_id, teaching_type)]
            classes = [c for c in self.classes.values()
                       if (c.module_id, c.teaching_type) == (module_id, teaching_type)]
            return {"slots": [{"dayOfWeek": s.day_of_week, "user": s.user, "time": s.time, "guidID": s.guid}
                              for s in slots],
                    "attClasses": [{"classId": c.class_id, "teachingWeek": c.teaching_week,
                                    "teachingType": c.label} for c in classes]}

    def roster(self, guid: str, class_id: int, method: str) -> list[dict[str, Any]] | None:
        """StudentsByLesson's answer; None when the slot or class is unknown or they do not belong together."""
        with self._lock:
            slot, cls = self.slots.get(guid), self.classes.get(class_id)
            if slot is None or cls is None or (slot.module_id, slot.teaching_type) != (cls.module_id,
                                                                                         cls.teaching_type):
                return None
            answer = []
            for user in slot.students:
                mark = self.marks.get((class_id, user), Mark(False, 0))
                answer.append({"userId": user, "fullName": self.students.get(user, ""),
                               "isAttended": mark.is_attended, "confidence": mark.confidence,
                               "faceEmbedders": self.embeddings.get((user, method), "")})
            return answer

    # --- tokens ------------------------------------------------------------------------------
    def login(self, username: str, password: str) -> dict[str, str] | None:
        """Both tokens for a right username/password, else None."""
        with self._lock:
            teacher = self.teachers.get(username)
            if teacher is None or not secrets.compare_digest(teacher["password"], password):
                return None
            return {"accessToken": self._access_token(username), "refreshToken": self._refresh_token(username)}

    def user_of(self, access_token: str, *, allow_expired: bool = False) -> str:
        """The username of a genuine access token; raises TokenRejected."""
        claims = self._decode(access_token)
        if claims.get("typ") == "refresh":
            raise TokenRejected("a refresh token is not an access token")
        if not allow_expired and claims["exp"] <= self.clock():
            raise TokenRejected("expired")
        return claims["unique_name"]

    def refresh(self, access_token: str, refresh_token: str) -> dict[str, str]:
        """A new access token (and a rotated refresh token when the knob says so); raises TokenRejected."""
        username = self.user_of(access_token, allow_expired=True)
        claims = self._decode(refresh_token)
        with self._lock:
            if claims.get("typ") != "refresh" or claims["exp"] <= self.clock():
                raise TokenRejected("not a live refresh token")
            if claims["jti"] not in self._refresh_jtis or claims.get("unique_name") != username:
                raise TokenRejected("revoked or foreign refresh token")
            answer = {"accessToken": self._access_token(username)}
            if self.knobs.rotate_refresh:
                self._refresh_jtis.discard(claims["jti"])
                answer["refreshToken"] = self._refresh_token(username)
            return answer

    def revoke_refresh_tokens(self) -> None:
        """Every refresh token issued so far stops working (Refresh answers 401)."""
        with self._lock:
            self._refresh_jtis.clear()

    def _claims(self, username: str, ttl: float) -> dict[str, Any]:
        return {"sub": self.teachers[username]["sub"], "unique_name": username, "jti": str(uuid.uuid4()),
                "exp": int(self.clock() + ttl), "iss": ISSUER, "aud": AUDIENCE}

    def _access_token(self, username: str) -> str:
        return jwt.encode(self._claims(username, self.access_ttl), self._secret, algorithm="HS256")

    def _refresh_token(self, username: str) -> str:
        claims = {**self._claims(username, self.refresh_ttl), "typ": "refresh"}
        self._refresh_jtis.add(claims["jti"])
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            return jwt.decode(token, self._secret, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER,
                              options={"verify_exp": False, "require": ["exp", "jti", "unique_name", "sub"]})
        except jwt.PyJWTError as exc:
            raise TokenRejected("not a token of this sandbox") from exc

    # --- knobs and counters ------------------------------------------------------------------
    def set_knobs(self, **changes: Any) -> None:
        """Change fault knobs (see :class:`Knobs`); ``unavailable_for`` (s) sets ``unavailable_until``."""
        with self._lock:
            if "unavailable_for" in changes:
                changes["unavailable_until"] = self.clock() + float(changes.pop("unavailable_for"))
            if changes.get("unavailable_mode", "503") not in ("503", "drop"):
                raise ValueError("unavailable_mode must be '503' or 'drop'.")
            for kind in changes.get("malformed", {}).values():
                if kind not in MALFORMED_KINDS:
                    raise ValueError(f"Unknown malformed kind {kind!r} (one of {', '.join(MALFORMED_KINDS)}).")
            self.knobs = dataclasses.replace(self.knobs, **changes)

    def take_failure(self) -> int | None:
        """The status to fail this call with (``fail_next`` first, then ``failure_rate``); None to answer."""
        with self._lock:
            if self.knobs.fail_next > 0:
                self.knobs = dataclasses.replace(self.knobs, fail_next=self.knobs.fail_next - 1)
                return self.knobs.fail_status
            if self.knobs.failure_rate > 0 and self.rng.random() < self.knobs.failure_rate:
                return 500
            return None

    def dropping(self) -> bool:
        """True while the unavailable window drops connections instead of answering 503."""
        knobs = self.knobs
        return knobs.unavailable_mode == "drop" and self.clock() < knobs.unavailable_until

    def count(self, call: str) -> int:
        """How many requests the call (e.g. ``"Refresh"``) received, faulted ones included."""
        with self._lock:
            return self.calls[call]

    def note_call(self, call: str) -> None:
        with self._lock:
            self.calls[call] += 1

    def reset_counts(self) -> None:
        with self._lock:
            self.calls.clear()
