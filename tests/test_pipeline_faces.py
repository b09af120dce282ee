"""The pipeline with the real engine (BlazeFace + MobileFaceNet) on real faces walking past the door.

ORL people are composed in memory onto 640x480 frames, moving across the frame like someone walking
past; shots 1-5 enrol, shots 6-10 (other poses and expressions) walk past. Nothing is written to disk.
"""

from __future__ import annotations

import contextlib

import cv2
import numpy as np
import pytest

from kiosk.datasets import orl_padded_rgb
from kiosk.errors import EnrollmentRefused
from kiosk.model.match import Gallery
from kiosk.pipeline import Pipeline, capture_embeddings
from tests.test_pipeline import ListCamera, Recorder, ScriptedCapture, wait_until

pytestmark = pytest.mark.slow
ROSTER = ("s1", "s3", "s4", "s5")  # enrolled; s2 walks past too but is not on the roster
SCALE = 2.0  # ORL crops are 92x112: doubled, the face is ~120 px wide in the frame


def student_id(person: str) -> str:
    return f"000{int(person[1:]):05d}"


def frame_with(face_grey: np.ndarray, x: int, y: int = 100) -> np.ndarray:
    """A 640x480 grey-walled frame with the (padded, scaled) face's top-left corner at (x, y)."""
    frame = np.full((480, 640, 3), 118, np.uint8)
    patch = cv2.resize(orl_padded_rgb(face_grey, pad=30), None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_LINEAR)
    h, w = patch.shape[:2]
    x, y = min(x, 640 - w), min(y, 480 - h)
    frame[y:y + h, x:x + w] = patch
    return frame


def walk_past(shots: list[np.ndarray], frames: int = 14) -> list[np.ndarray]:
    """``frames`` frames moving left to right by 20 px each, cycling through ``shots``."""
    return [frame_with(shots[i % len(shots)], 20 + 20 * i) for i in range(frames)]


def enrol(engine, shots: list[np.ndarray]) -> np.ndarray:
    """Vectors of the shots the engine accepts as enrolment photos (some ORL shots look away)."""
    vectors = []
    for img in shots:
        with contextlib.suppress(EnrollmentRefused):
            vectors.append(engine.embed_photo(orl_padded_rgb(img)))
    assert vectors, "no usable enrolment photo"
    return np.stack(vectors)


@pytest.fixture(scope="module")
def roster_gallery(engine, orl) -> Gallery:
    return Gallery.from_vectors({student_id(p): enrol(engine, orl[p][:5]) for p in ROSTER})


@pytest.fixture
def door(face_settings, engine, roster_gallery):
    """A pipeline on a scripted camera with the real engine and the committed calibration."""

    class Door:
        """What the test looks at: decisions, feedback, the scripted camera and the pipeline."""

    door = Door()
    door.decisions, door.feedback, door.capture = [], Recorder(), ScriptedCapture()

    def on_decision(decision):
        door.decisions.append(decision)
        return "marked"

    door.pipeline = Pipeline(face_settings, engine=engine, source_factory=lambda: None, on_decision=on_decision,
                             events=door.feedback, feedback=door.feedback, capture_factory=lambda f: door.capture)
    door.pipeline.start(roster_gallery)

    def run(images):
        before = door.pipeline.counters.frames + door.pipeline.counters.frame_errors
        door.capture.feed(images)
        assert wait_until(lambda: door.pipeline.counters.frames + door.pipeline.counters.frame_errors
                          >= before + len(images), timeout=120)

    door.run = run
    yield door
    door.pipeline.stop()


def test_an_enrolled_student_walking_past_is_marked_exactly_once(door, orl):
    door.run(walk_past(orl["s1"][5:]) + [np.full((480, 640, 3), 118, np.uint8)] * 8)
    assert [(d.kind, d.user_id) for d in door.decisions] == [("recognised", student_id("s1"))]
    assert door.decisions[0].confidence > 50
    assert door.feedback.calls == ["recognised"]
    stats = door.pipeline.stats()
    assert stats["frame_errors"] == 0 and stats["faces_seen"] == 1


def test_a_student_not_on_the_roster_is_unknown_and_never_marked(door, orl):
    door.run(walk_past(orl["s2"], frames=20) + [np.full((480, 640, 3), 118, np.uint8)] * 8)
    assert door.decisions == []
    stats = door.pipeline.stats()
    assert stats["faces_seen"] >= 1 and stats["embeddings"] >= 3, "the walker was not seen at all"
    assert stats["recognised"] == 0 and "recognised" not in door.feedback.calls
    assert door.feedback.calls == ["unknown"] * stats["unknown"]


def test_enrolment_from_the_camera_gives_vectors_that_match_the_student(engine, orl, roster_gallery):
    camera = ListCamera(walk_past(orl["s1"][5:], frames=8))
    vectors = capture_embeddings(engine, lambda: camera, count=3, timeout=60)
    assert len(vectors) == 3 and camera.closed
    for vector in vectors:
        scores = dict(zip(roster_gallery.user_ids, roster_gallery.scores(vector), strict=True))
        assert max(scores, key=scores.get) == student_id("s1")
