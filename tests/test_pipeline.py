"""The pipeline with a scripted camera and a fake engine: decisions, feedback, errors, threads.

Each fake frame is a tiny image whose first pixel names who is in it (0 = nobody) and whose second
pixel is that person's x position, so the fake engine can "detect" and "embed" without models.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from kiosk.camera.base import Frame, FrameSource
from kiosk.camera.capture import CaptureStatus
from kiosk.config import load_settings
from kiosk.errors import CameraError, EnrollmentRefused, NotOnRoster
from kiosk.model.match import Calibration, Gallery
from kiosk.model.types import Detection
from kiosk.pipeline import Pipeline, capture_embeddings, describe_error
from tests.helpers import wait_until

ENROLLED, STRANGER, TWO_PEOPLE = 1, 2, 3
VECTORS = {ENROLLED: np.eye(8, dtype=np.float32)[0], STRANGER: np.eye(8, dtype=np.float32)[1]}
ENROLLED_ID = "00000001"
CALIBRATION = Calibration("test", ((0.0, 0.0), (0.3, 50.0), (0.6, 100.0)), far_at_50=0.001)


def image(person: int, x: int = 100) -> np.ndarray:
    img = np.zeros((4, 4, 3), np.uint8)
    img[0, 0, 0], img[0, 0, 1] = person, x
    return img


def walk_past(person: int, steps: int = 12) -> list[np.ndarray]:
    """Frames of ``person`` walking across, a few pixels per frame (one track)."""
    return [image(person, 20 + 8 * i) for i in range(steps)]


@dataclass
class Quality:
    ok: bool
    score: float = 1.0


class FakeEngine:
    """Detects the people named in the frame; embeds each as their fixed vector."""

    def __init__(self, fail_on: set[int] | None = None):
        self.fail_on = fail_on or set()
        self.embed_batches: list[int] = []
        self.calls = 0

    def faces(self, img: np.ndarray):
        self.calls += 1
        if self.calls in self.fail_on:
            raise KeyError("00012345")  # a message that must never be shown
        person, x = int(img[0, 0, 0]), float(img[0, 0, 1])
        people = [ENROLLED, STRANGER] if person == TWO_PEOPLE else ([person] if person else [])
        return [(self._det(p, x + 200 * k), Quality(True)) for k, p in enumerate(people)]

    @staticmethod
    def _det(person: int, x: float) -> Detection:
        det = Detection((x, 50.0, x + 60.0, 120.0), np.zeros((6, 2)), 0.9)
        object.__setattr__(det, "person", person)
        return det

    def embed(self, img: np.ndarray, detections) -> np.ndarray:
        assert 1 <= len(detections) <= 2, "the embedder's batch is 2"
        self.embed_batches.append(len(detections))
        return np.stack([VECTORS[d.person] for d in detections])


class ScriptedCapture:
    """A capture the test feeds frame by frame; never drops one."""

    def __init__(self, source_factory=None):
        self.frames: queue.Queue = queue.Queue()
        self.state, self.last_error, self.started, self.stopped = "running", None, False, False
        self.index = 0

    def feed(self, images) -> None:
        for img in images:
            self.frames.put(Frame(img, time.monotonic(), self.index))
            self.index += 1

    def start(self):
        self.started = True
        return self

    def get(self, timeout=None):
        try:
            return self.frames.get(timeout=timeout)
        except queue.Empty:
            return None

    def stop(self, timeout: float = 5.0) -> None:
        self.stopped, self.state = True, "stopped"

    def status(self) -> CaptureStatus:
        return CaptureStatus(self.state, "scripted", self.last_error, self.index, 0, 15.0, 0)


class Recorder:
    """Feedback and event bus stand-in: records calls in order."""

    def __init__(self):
        self.calls: list[str] = []
        self.events: list[tuple[str, dict]] = []

    def __getattr__(self, name):
        if name in ("recognised", "already_marked", "unknown", "error", "clear_error"):
            return lambda *reason: self.calls.append(name)
        raise AttributeError(name)

    def publish(self, name, data):
        self.events.append((name, data))


@pytest.fixture
def settings(tmp_path):
    return load_settings(env={"KIOSK_STATE_DIR": str(tmp_path), "KIOSK_VOTES_NEEDED": "3",
                              "KIOSK_MAX_TRACK_EMBEDDINGS": "6"})


@pytest.fixture
def rig(settings):
    """A pipeline on a scripted camera; ``rig.answer`` is what on_decision returns."""

    class Rig:
        answer = "marked"

    rig = Rig()
    rig.decisions, rig.feedback, rig.engine = [], Recorder(), FakeEngine()
    rig.capture = ScriptedCapture()

    def on_decision(decision):
        rig.decisions.append(decision)
        if isinstance(rig.answer, Exception):
            raise rig.answer
        return rig.answer

    rig.pipeline = Pipeline(settings, engine=rig.engine, source_factory=lambda: None, on_decision=on_decision,
                            events=rig.feedback, feedback=rig.feedback, calibration=CALIBRATION,
                            capture_factory=lambda factory: rig.capture)
    rig.run = lambda images: _run(rig, images)
    yield rig
    rig.pipeline.stop()


def _run(rig, images) -> None:
    before = rig.pipeline.counters.frames + rig.pipeline.counters.frame_errors
    rig.capture.feed(images)
    assert wait_until(lambda: rig.pipeline.counters.frames + rig.pipeline.counters.frame_errors
                      >= before + len(images)), "the pipeline stopped processing frames"


def gallery() -> Gallery:
    return Gallery.from_vectors({ENROLLED_ID: VECTORS[ENROLLED][None, :]})


def test_an_enrolled_person_walking_past_is_decided_exactly_once(rig):
    rig.pipeline.start(gallery())
    rig.run(walk_past(ENROLLED, 20) + [image(0)] * 8)
    assert [(d.user_id, d.kind) for d in rig.decisions] == [(ENROLLED_ID, "recognised")]
    assert rig.decisions[0].confidence == 100
    assert rig.feedback.calls == ["recognised"]
    recognitions = [data for name, data in rig.feedback.events if name == "recognition"]
    assert recognitions == [{"kind": "recognised", "trackId": 1, "userId": ENROLLED_ID, "confidence": 100,
                             "outcome": "marked"}]
    # votes_needed embeddings, then no more for a decided track
    assert rig.pipeline.stats()["embeddings"] == 3


def test_an_unenrolled_face_gives_unknown_and_no_decision_call(rig):
    rig.pipeline.start(gallery())
    rig.run(walk_past(STRANGER))
    assert rig.decisions == []
    assert rig.feedback.calls == ["unknown"]
    assert rig.pipeline.stats()["unknown"] == 1


@pytest.mark.parametrize(("answer", "signal"), [("already", "already_marked"), ("manual", "already_marked"),
                                                ("ignored", None), (None, None)])
def test_the_sessions_answer_picks_the_signal(rig, answer, signal):
    rig.answer = answer
    rig.pipeline.start(gallery())
    rig.run(walk_past(ENROLLED))
    assert len(rig.decisions) == 1
    assert rig.feedback.calls == ([signal] if signal else [])


def test_two_people_at_once_are_embedded_in_one_batch_of_two(rig):
    rig.pipeline.start(gallery())
    rig.run([image(TWO_PEOPLE, 20 + 4 * i) for i in range(8)])
    assert [d.user_id for d in rig.decisions] == [ENROLLED_ID]
    assert rig.engine.embed_batches[0] == 2
    assert sorted(rig.feedback.calls) == ["recognised", "unknown"]
    assert rig.pipeline.stats()["faces_seen"] == 2


def test_an_enrolment_during_the_class_is_used_from_the_next_frames(rig):
    rig.pipeline.start(Gallery.from_vectors({}))
    rig.run(walk_past(ENROLLED))
    assert rig.decisions == [] and rig.feedback.calls == ["unknown"]
    rig.pipeline.set_gallery({ENROLLED_ID: VECTORS[ENROLLED][None, :]})
    rig.run([image(0)] * 8 + walk_past(ENROLLED))
    assert [d.user_id for d in rig.decisions] == [ENROLLED_ID]


def test_a_failing_frame_is_counted_and_reported_but_the_loop_goes_on(rig, capsys):
    rig.engine.fail_on = {2}
    rig.pipeline.start(gallery())
    rig.run(walk_past(ENROLLED))
    stats = rig.pipeline.stats()
    assert stats["frame_errors"] == 1
    assert stats["last_error"].startswith("KeyError")
    assert "00012345" not in stats["last_error"] and "00012345" not in capsys.readouterr().err
    assert [d.user_id for d in rig.decisions] == [ENROLLED_ID]


def test_an_error_from_the_session_is_counted_not_fatal(rig):
    rig.answer = NotOnRoster("The student is not on the roster of the running class.")
    rig.pipeline.start(gallery())
    rig.run(walk_past(ENROLLED) + [image(0)] * 8 + walk_past(ENROLLED))
    assert rig.pipeline.stats()["frame_errors"] == 2
    assert rig.pipeline.stats()["last_error"] == "The student is not on the roster of the running class."
    assert rig.pipeline.running


def test_status_events_carry_figures_and_no_ids(rig):
    rig.pipeline.start(gallery())
    rig.run(walk_past(ENROLLED, 3))
    statuses = [data for name, data in rig.feedback.events if name == "status"]
    assert statuses and set(statuses[0]) == {"fps", "faces", "tracks", "frames", "dropped", "camera",
                                             "cameraError"}
    assert ENROLLED_ID not in repr(statuses)


def test_stop_joins_the_worker_closes_the_camera_and_can_start_again(rig):
    rig.pipeline.start(gallery())
    assert rig.capture.started and rig.pipeline.running
    rig.pipeline.stop()
    rig.pipeline.stop()  # idempotent
    assert rig.capture.stopped and not rig.pipeline.running
    assert not [t for t in threading.enumerate() if t.name == "kiosk-pipeline"]
    assert rig.pipeline.tick_age() is None and rig.pipeline.stats()["camera_state"] == "off"
    rig.capture = ScriptedCapture()
    rig.pipeline.start(gallery())
    rig.run(walk_past(ENROLLED))
    assert [d.user_id for d in rig.decisions] == [ENROLLED_ID]


def test_a_person_still_pending_when_the_class_ends_is_undecided(rig):
    rig.pipeline.start(gallery())
    rig.run(walk_past(ENROLLED, 2))
    rig.pipeline.stop()
    assert rig.decisions == [] and rig.pipeline.stats()["undecided"] == 1


def test_the_worker_ticks_while_no_frames_come(rig):
    rig.pipeline.start(gallery())
    first = rig.pipeline.last_tick
    assert wait_until(lambda: rig.pipeline.last_tick != first)
    assert rig.pipeline.tick_age() is not None


# --- with the real capture thread and a camera that fails ------------------------------------------
class BrokenCamera(FrameSource):
    """A camera that cannot be opened."""

    opened = 0

    def __init__(self):
        super().__init__("broken test camera")

    def _open(self):
        BrokenCamera.opened += 1
        raise CameraError("The test camera is unplugged.")

    def _read(self):
        return None

    def _close(self):
        pass


class ListCamera(FrameSource):
    """Plays a list of images, then ends."""

    def __init__(self, images, fail_open: bool = False):
        super().__init__("list test camera")
        self.images, self.fail_open, self.index = list(images), fail_open, 0

    def _open(self):
        if self.fail_open:
            raise CameraError("The test camera is unplugged.")

    def _read(self):
        if self.index >= len(self.images):
            return None
        self.index += 1
        return Frame(self.images[self.index - 1], time.monotonic(), self.index - 1)

    def _close(self):
        pass


def test_a_broken_camera_shows_in_stats_and_the_loop_stays_alive(settings):
    feedback = Recorder()
    pipeline = Pipeline(settings, engine=FakeEngine(), source_factory=BrokenCamera, on_decision=lambda d: None,
                        feedback=feedback, calibration=CALIBRATION)
    pipeline.start(gallery())
    try:
        assert wait_until(lambda: pipeline.stats()["camera_state"] == "reconnecting")
        assert pipeline.stats()["camera_error"] == "The test camera is unplugged."
        tick = pipeline.last_tick
        assert wait_until(lambda: pipeline.last_tick != tick), "the worker stopped ticking"
        assert wait_until(lambda: "error" in feedback.calls)
    finally:
        pipeline.stop()
    assert pipeline.stats()["camera_state"] == "off"
    assert feedback.calls[-1] == "clear_error"
    assert not [t for t in threading.enumerate() if t.name in ("kiosk-pipeline", "kiosk-capture")]


def test_a_replay_that_ends_leaves_the_worker_ticking_without_spinning(settings):
    engine = FakeEngine()
    pipeline = Pipeline(settings, engine=engine, source_factory=lambda: ListCamera([image(0)] * 3),
                        on_decision=lambda d: None, calibration=CALIBRATION)
    with pipeline:
        pipeline.start(gallery())
        assert wait_until(lambda: pipeline.stats()["camera_state"] == "ended")
        tick = pipeline.last_tick
        assert wait_until(lambda: pipeline.last_tick != tick)
        assert engine.calls <= 3


# --- enrolment capture ------------------------------------------------------------------------------
def test_capture_embeddings_returns_vectors_of_the_one_face():
    camera = ListCamera(walk_past(ENROLLED, 10))
    vectors = capture_embeddings(FakeEngine(), lambda: camera, count=3, timeout=10)
    assert len(vectors) == 3
    assert all(np.allclose(v, VECTORS[ENROLLED]) for v in vectors)
    assert camera.closed


@pytest.mark.parametrize(("images", "reason"), [
    ([image(0)] * 5, "No face"),
    ([image(TWO_PEOPLE)] * 5, "Several people"),
    ([], "no pictures"),
])
def test_capture_embeddings_refuses_with_a_plain_reason(images, reason):
    camera = ListCamera(images)
    with pytest.raises(EnrollmentRefused, match=reason):
        capture_embeddings(FakeEngine(), lambda: camera, count=3, timeout=10)
    assert camera.closed


def test_capture_embeddings_refuses_when_the_camera_fails():
    camera = ListCamera([], fail_open=True)
    with pytest.raises(EnrollmentRefused, match="camera could not be used: The test camera is unplugged"):
        capture_embeddings(FakeEngine(), lambda: camera)
    assert camera.closed


def test_capture_embeddings_gives_up_after_the_timeout():
    ticks = iter(range(100))
    camera = ListCamera([image(0)] * 1000)
    with pytest.raises(EnrollmentRefused, match="No face"):
        capture_embeddings(FakeEngine(), lambda: camera, timeout=5, clock=lambda: float(next(ticks)))
    assert camera.index <= 6


def test_error_descriptions_never_carry_data():
    try:
        {}["00012345"]
    except KeyError as exc:
        text = describe_error(exc)
    assert text.startswith("KeyError at test_pipeline.py:") and "00012345" not in text
    assert describe_error(CameraError("The camera is unplugged.")) == "The camera is unplugged."
