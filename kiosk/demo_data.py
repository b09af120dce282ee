"""Demo data for ``kiosk demo``: a sandbox university with real faces, and a door camera replay.

Faces are the AT&T/ORL photos (40 people, 10 photos each) from a registry package. The demo class has
30 students (ORL people s11-s40) with invented names; 26 of them are enrolled through the real enrolment
path (photos 1-3 -> the engine -> SetEmbedding on the sandbox over HTTP), 4 are deliberately not
enrolled. The replay shows enrolled students walking past the door (photos 5-10, never the enrolment
photos 1-4), a student of another module (enrolled, not on this roster), a stranger who is enrolled nowhere,
and a roster student who is not enrolled. Only the enrolled roster walkers may be marked present.

The replay frames are test data made from the registry package's photos; they are written once to
``cache_dir/demo-replay-v1`` so the ``replay:DIR`` camera can play them.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from kiosk import datasets
from kiosk.enroll import enroll_many
from kiosk.errors import EnrollmentRefused
from kiosk.model import embedding_format
from kiosk.wiut.sandbox_data import SandboxState

DEMO_USERNAME = "demo.teacher"
DEMO_PASSWORD = "demo-password"  # a sandbox placeholder, printed by `kiosk demo`
MODULE_ID, OTHER_MODULE_ID = 901, 902
SEMINAR, WORKSHOP = 1, 2
REPLAY_VERSION = "demo-replay-v1"

FIRST = ["Aziza", "Bobur", "Dilnoza", "Eldor", "Feruza", "Gulnora", "Husan", "Iroda", "Jasur", "Kamola",
         "Laziz", "Madina", "Nodir", "Oydin", "Parviz", "Rano", "Sardor", "Tahmina", "Ulugbek", "Vazira"]
LAST = ["Abdullaeva", "Bakirov", "Choriyeva", "Davronov", "Ergasheva", "Fayzullayev", "Gafurova", "Hamidov",
        "Ismoilova", "Jurayev", "Karimova", "Latipov", "Mirzayeva", "Nazarov", "Olimova", "Pulatov"]

ROSTER_PEOPLE = [f"s{i}" for i in range(11, 41)]          # 30 students on the demo class
NOT_ENROLLED = {"s14", "s23", "s31", "s38"}              # on the roster, no embedding
WALKERS = ["s12", "s17", "s21", "s26", "s29", "s33", "s36", "s40"]  # enrolled roster students at the door
OTHER_MODULE_PERSON = "s5"                                # enrolled, but on another module's roster
STRANGER = "s7"                                           # enrolled nowhere
NOT_ENROLLED_WALKER = "s23"                               # on the roster, walks past, cannot be recognised
ENROL_SHOTS = range(0, 4)                                 # photos 1-4 may be used to enrol
WALK_SHOTS = slice(4, None)                               # photos 5-10 are what the camera sees


@dataclasses.dataclass(frozen=True)
class DemoClass:
    """What the demo set up; ``expected_present`` are the userIds the camera should mark."""

    module_id: int
    teaching_type: int
    lesson_guid: str
    class_id: int
    expected_present: tuple[str, ...]
    roster: tuple[str, ...]


def user_id_of(person: str) -> str:
    """An 8-digit student ID for an ORL person ("s12" -> "00012012")."""
    n = int(person[1:])
    return f"{n:05d}{n:03d}"


def name_of(person: str) -> str:
    n = int(person[1:])
    return f"{FIRST[n % len(FIRST)]} {LAST[(n * 7) % len(LAST)]}"


def running_slot_time(now: datetime) -> str:
    """A two-hour slot "HH:MM - HH:MM" that started 20 minutes ago (kept inside today)."""
    start = max(now.replace(hour=0, minute=0, second=0, microsecond=0), now - timedelta(minutes=20))
    start = start.replace(minute=start.minute - start.minute % 5, second=0, microsecond=0)
    end = min(start + timedelta(hours=2), now.replace(hour=23, minute=59, second=0, microsecond=0))
    return f"{start:%H:%M} - {end:%H:%M}"


def build_state(now: datetime) -> tuple[SandboxState, DemoClass]:
    """The demo university: one teacher, two modules, slots (one running now), two teaching weeks."""
    state = SandboxState(data={})
    state.add_teacher(DEMO_USERNAME, DEMO_PASSWORD, "Demo Teacher")
    state.add_teacher("other.teacher", DEMO_PASSWORD + "-2", "Another Teacher")
    state.add_module(MODULE_ID, "Introduction to Computer Vision", "4CS001-n", teachers=[DEMO_USERNAME])
    state.add_module(OTHER_MODULE_ID, "Contract Law", "4LLAW020C-n", teachers=[DEMO_USERNAME, "other.teacher"])
    for person in ROSTER_PEOPLE + [f"s{i}" for i in range(1, 11)]:
        state.add_student(user_id_of(person), name_of(person))
    roster = [user_id_of(p) for p in ROSTER_PEOPLE]
    other_day = (now + timedelta(days=2)).strftime("%A")
    guid = state.add_slot(MODULE_ID, SEMINAR, day_of_week=now.strftime("%A"), user=DEMO_USERNAME,
                          time=running_slot_time(now), students=roster)
    state.add_slot(MODULE_ID, SEMINAR, day_of_week=other_day, user="other.teacher", time="09:00 - 11:00",
                   students=roster)
    state.add_slot(MODULE_ID, WORKSHOP, day_of_week=other_day, user=DEMO_USERNAME, time="14:00 - 16:00",
                   students=roster)
    state.add_class(MODULE_ID, SEMINAR, class_id=61001, teaching_week="TW1", label="Seminar 1")
    class_id = state.add_class(MODULE_ID, SEMINAR, class_id=61002, teaching_week="TW2", label="Seminar 1")
    state.add_class(MODULE_ID, WORKSHOP, class_id=61101, teaching_week="TW1", label="Workshop 1")
    others = [user_id_of(f"s{i}") for i in range(1, 11)]
    state.add_slot(OTHER_MODULE_ID, SEMINAR, day_of_week=now.strftime("%A"), user="other.teacher",
                   time="08:00 - 09:00", students=others)
    state.add_class(OTHER_MODULE_ID, SEMINAR, class_id=62001, teaching_week="TW1", label="Seminar 1")
    demo = DemoClass(MODULE_ID, SEMINAR, guid, class_id,
                     expected_present=tuple(user_id_of(p) for p in WALKERS), roster=tuple(roster))
    return state, demo


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def enrol_demo_students(settings, client, engine) -> list[str]:
    """Enrol every roster student but NOT_ENROLLED, and the other module's person, via SetEmbedding.

    Returns the refusal reasons (normally none)."""
    faces = datasets.orl_faces(settings)
    people = [p for p in ROSTER_PEOPLE if p not in NOT_ENROLLED] + [OTHER_MODULE_PERSON]
    photos = {user_id_of(p): [_png(datasets.orl_padded_rgb(faces[p][k])) for k in ENROL_SHOTS] for p in people}

    def embed_three(shots: list[bytes]) -> np.ndarray:
        """The first three photos the quality gate accepts (a teacher would retake a refused one)."""
        vectors, reasons = [], []
        for data in shots:
            try:
                vectors.append(engine.embed_photo(data))
            except EnrollmentRefused as exc:
                reasons.append(str(exc))
            if len(vectors) == 3:
                break
        if not vectors:
            raise EnrollmentRefused(reasons[0])
        return np.stack(vectors)

    def store(user_id: str, vectors: np.ndarray) -> None:
        client.set_embedding(user_id, embedding_format.encode(vectors, settings.embedding_method),
                             settings.embedding_method)

    # Each student's "photo" is their list of shots: enroll_many fetches it and embed_three picks from it.
    summary = enroll_many(list(photos), photos.__getitem__, embed_three, store)  # type: ignore[arg-type]
    return list(summary.refused.values())


# --- the door replay --------------------------------------------------------------------------------
def _background(width: int, height: int) -> np.ndarray:
    """A corridor-like backdrop: a vertical gradient with a darker door frame."""
    ramp = np.linspace(170, 110, height, dtype=np.float32)[:, None, None]
    bg = np.broadcast_to(ramp * np.array([1.0, 0.97, 0.9], np.float32), (height, width, 3)).copy()
    cv2.rectangle(bg, (width // 5, height // 12), (4 * width // 5, height), (80, 70, 60), 14)
    return bg.astype(np.uint8)


def _walk(bg: np.ndarray, faces: list[np.ndarray], frames: int, face_width: int) -> list[np.ndarray]:
    """A person crossing the doorway left to right, a different photo every few frames."""
    h, w = bg.shape[:2]
    out = []
    for i in range(frames):
        face = datasets.orl_padded_rgb(faces[(i // 3) % len(faces)], pad=12)
        scale = face_width / face.shape[1]
        face = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        fh, fw = face.shape[:2]
        x = int(w * 0.25 + (w * 0.5 - fw) * i / max(frames - 1, 1))
        y = (h - fh) // 3
        frame = bg.copy()
        frame[y:y + fh, x:x + fw] = face
        out.append(frame)
    return out


def build_replay(settings, folder: Path | None = None, *, frames_per_walk: int = 15, gap: int = 6) -> Path:
    """Write the door sequence (once) and return its folder."""
    folder = folder or Path(settings.cache_dir) / REPLAY_VERSION
    manifest = folder / "manifest.json"
    if manifest.is_file():
        return folder
    faces = datasets.orl_faces(settings)
    bg = _background(settings.camera_width, settings.camera_height)
    order = [*WALKERS[:4], OTHER_MODULE_PERSON, *WALKERS[4:6], STRANGER, NOT_ENROLLED_WALKER, *WALKERS[6:]]
    frames: list[np.ndarray] = [bg] * gap
    for person in order:
        frames += _walk(bg, faces[person][WALK_SHOTS], frames_per_walk, face_width=150) + [bg] * gap
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
    manifest.write_text(json.dumps({"version": REPLAY_VERSION, "frames": len(frames), "walkers": order}))
    return folder
