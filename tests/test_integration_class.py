"""A whole class, in process: the sandbox API on loopback, a replay camera of real faces, the real engine.

``kiosk run``'s own wiring (:class:`kiosk.daemon.Services`: outbox, LED/buzzer on mock pins, event bus,
pipeline factory) is driven through the control plane the teacher page uses (:class:`kiosk.app.Kiosk`).
ORL people are enrolled from photos 1-5 through SetEmbedding, then walk past the door in photos 6-10
(``tests/test_pipeline_faces.py`` composes the frames). The sandbox counts every mark it stores, so a
duplicate post fails the test even when it carries the same value.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk.config import load_settings
from kiosk.daemon import Services, log_to
from kiosk.datasets import orl_padded_rgb
from kiosk.errors import EnrollmentRefused
from kiosk.wiut.sandbox import SandboxServer, SandboxState
from tests.fixtures.sandbox import DEMO_CLASS_ID, DEMO_LOGIN, DEMO_MODULE_ID, DEMO_SLOT_GUID
from tests.helpers import wait_for
from tests.test_pipeline_faces import walk_past

pytestmark = pytest.mark.slow

# ORL person -> roster student of class 46703 (the packaged sandbox fixture).
MARKED = {"s1": "00019880", "s3": "00019887"}  # no mark yet: the camera marks them
ABSENT_BY_HAND = ("s4", "00019894")  # the teacher marks them absent; then they walk past
ALREADY_56 = ("s6", "00020020")  # the owners' example: a camera mark (56) already stored
NOT_ON_ROSTER = ("s5", "00099001")  # enrolled at the university, not on this class's roster
UNKNOWN = "s2"  # never enrolled anywhere
BLANK = np.full((480, 640, 3), 118, np.uint8)


class CountingState(SandboxState):
    """The sandbox's state, also recording every mark it stores: ``stored[userId]`` lists the values."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stored: dict[str, list[int]] = collections.defaultdict(list)

    def set_mark(self, class_id: int, user_id: str, confidence: int) -> None:
        super().set_mark(class_id, user_id, confidence)
        if class_id == DEMO_CLASS_ID:
            self.stored[user_id].append(confidence)

    def confidences(self) -> dict[str, int]:
        return {user: mark.confidence for user, mark in self.attendance(DEMO_CLASS_ID).items()}


def png(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def photos_of(engine, shots) -> list[bytes]:
    """PNG enrolment photos of the shots the engine accepts (some ORL shots look away)."""
    photos = []
    for img in shots:
        with contextlib.suppress(EnrollmentRefused):
            engine.embed_photo(orl_padded_rgb(img))
            photos.append(png(orl_padded_rgb(img)))
    assert photos, "no usable enrolment photo"
    return photos


def write_door(folder: Path, orl, people: list[str], *, gap: int = 8) -> int:
    """Write the replay: each person walks past (14 frames), then ``gap`` empty frames; returns the count."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = [BLANK] * 3
    for person in people:
        frames += walk_past(orl[person][5:], frames=14) + [BLANK] * gap
    for index, frame in enumerate(frames):
        (folder / f"{index:04d}.png").write_bytes(png(frame))
    return len(frames)


class Door:
    """The kiosk of ``kiosk run`` (in process) against ``api``; ``recognitions`` collects the page's events."""

    def __init__(self, tmp_path: Path, api: SandboxServer, engine, face_settings, *, camera=None,
                 fps: float = 10.0, outbox_options: dict | None = None):
        self.replay = tmp_path / "replay"
        env = {"KIOSK_API_URL": api.url, "KIOSK_CAMERA": f"replay:{self.replay}", "KIOSK_REPLAY_FPS": str(fps),
               "KIOSK_STATE_DIR": str(tmp_path / "state"), "KIOSK_GPIO": "mock", "KIOSK_UNDO_SECONDS": "0",
               "KIOSK_API_TIMEOUT": "3", "KIOSK_ROSTER_REFRESH_SECONDS": "5",
               "KIOSK_MODELS_DIR": face_settings.models_dir}
        self.settings = load_settings(env=env).replace(detect_roi="", detect_tiles=1, detector="full",
                                                       embedder="mobilefacenet")
        self.services = Services(self.settings, engine=engine, camera=camera, outbox_options=outbox_options).build()
        self.kiosk = self.services.kiosk
        self.recognitions: list[dict] = []
        self._sub = self.kiosk.events.subscribe(maxsize=10_000)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._sub.closed:
            event = self._sub.get(timeout=0.2)
            if event is not None and event.name == "recognition":
                self.recognitions.append(event.data)

    @property
    def pipeline(self):
        return self.services.watch.pipeline

    def start_class(self) -> dict:
        return self.kiosk.start_class(DEMO_SLOT_GUID, DEMO_CLASS_ID, DEMO_MODULE_ID, 1)

    def wait_for_the_replay(self, timeout: float = 180) -> None:
        """Until the camera has played every image and the worker has caught up with the last one."""
        wait_for(lambda: self.pipeline.stats()["camera_state"] == "ended", timeout, "the end of the replay")
        seen = [-1]

        def settled() -> bool:  # no frame processed in the last second (GET_TIMEOUT x 2)
            frames, seen[0] = seen[0], self.pipeline.stats()["frames"]
            return frames == seen[0]

        wait_for(settled, 60, "a settled worker", every=1.0)

    def signals(self) -> list[str]:
        return [name for _, name in self.kiosk.feedback.recent()]

    def close(self) -> None:
        self.services.close()
        self._sub.close()
        self._reader.join(5)


@pytest.fixture
def enrolled_api(engine, orl):
    """A sandbox API whose teacher has enrolled the walkers (but not UNKNOWN) with photos 1-5."""
    state = CountingState()
    state.add_student(NOT_ON_ROSTER[1], "Outside Student")
    with SandboxServer(state) as api:
        vectors = {uid: photos_of(engine, orl[p][:5])
                   for p, uid in [*MARKED.items(), ABSENT_BY_HAND, ALREADY_56, NOT_ON_ROSTER]}
        api.photos = vectors
        yield api


def enrol_everyone(door: Door, api) -> None:
    for user_id, photos in api.photos.items():
        assert door.kiosk.enroll(user_id, photos) == len(photos)
    assert api.state.count("SetEmbedding") == len(api.photos)


def test_a_class_marks_exactly_the_roster_students_who_walk_past(tmp_path, engine, orl, face_settings,
                                                                 enrolled_api, capsys):
    api, state = enrolled_api, enrolled_api.state
    before = state.confidences()
    people = ["s1", UNKNOWN, NOT_ON_ROSTER[0], "s3", ALREADY_56[0], ABSENT_BY_HAND[0]]
    write_door(tmp_path / "replay", orl, people)
    with log_to():  # the kiosk's log records go to stdout as in `kiosk run`
        door = Door(tmp_path, api, engine, face_settings)
        try:
            door.kiosk.login(*DEMO_LOGIN)
            enrol_everyone(door, api)
            started = door.start_class()
            assert started["counts"]["enrolled"] == 4       # the non-roster student is not in this class
            door.kiosk.mark(ABSENT_BY_HAND[1], present=False)  # before they reach the door
            door.wait_for_the_replay()
            assert door.kiosk.outbox.flush(30)
            snapshot = door.kiosk.end_class()
        finally:
            door.close()
    output = capsys.readouterr()

    marked_ids = set(MARKED.values())
    after = state.confidences()
    assert all(51 <= after[uid] <= 100 for uid in marked_ids), (after, door.recognitions)
    assert after[ABSENT_BY_HAND[1]] == -1                    # the later recognition did not override it
    assert after[ALREADY_56[1]] == 56                        # already marked by a camera: not posted again
    assert NOT_ON_ROSTER[1] not in after
    changed = {uid for uid in after if after[uid] != before.get(uid)}
    assert changed == marked_ids | {ABSENT_BY_HAND[1]}       # nobody else
    assert dict(state.stored) == {**{uid: [after[uid]] for uid in marked_ids}, ABSENT_BY_HAND[1]: [-1]}

    outcomes = {e["userId"]: e["outcome"] for e in door.recognitions if e["kind"] == "recognised"}
    assert outcomes[ABSENT_BY_HAND[1]] == "manual" and outcomes[ALREADY_56[1]] == "already", door.recognitions
    assert NOT_ON_ROSTER[1] not in outcomes
    assert any(e["kind"] == "unknown" for e in door.recognitions)
    signals = door.signals()
    assert signals.count("recognised") == 2 and "unknown" in signals and "error" not in signals
    rows = {r["userId"]: r for r in snapshot["students"]}
    assert rows[ABSENT_BY_HAND[1]]["present"] is False and rows[ABSENT_BY_HAND[1]]["source"] == "manual"
    assert all(rows[uid]["source"] == "camera" for uid in marked_ids)

    text = output.out + output.err
    assert "class ended" in text
    names = {s["fullName"] for s in snapshot["students"]} | {"Outside Student"}
    leaked = [w for w in {*rows, NOT_ON_ROSTER[1], *names, DEMO_LOGIN[1]} if w in text]
    assert not leaked, text
