"""A class under faults, in process with the sandbox API, a replay camera of real faces and the real engine:
the API down for 20 s and then failing 30 % of calls, access tokens that expire every 3 s, and a camera
that raises in the middle of the replay. Every mark arrives exactly once (the sandbox counts what it stores).
"""

from __future__ import annotations

import pytest

from kiosk.camera.replay import ReplaySource
from kiosk.errors import CameraError
from kiosk.feedback import ERROR_CAMERA
from tests.fixtures.sandbox import DEMO_LOGIN
from tests.helpers import wait_for
from tests.test_integration_class import (
    ABSENT_BY_HAND,
    MARKED,
    CountingState,
    Door,
    enrol_everyone,
    photos_of,
    write_door,
)

pytestmark = pytest.mark.slow
OUTAGE_S = 20.0
WALKERS = {person: uid for person, uid in [*MARKED.items(), ABSENT_BY_HAND]}  # s1, s3, s4: all on the roster


@pytest.fixture
def api(engine, orl):
    from kiosk.wiut.sandbox import SandboxServer

    def make(**state_options):
        server = SandboxServer(CountingState(seed=7, **state_options)).start()
        servers.append(server)
        server.photos = {uid: photos_of(engine, orl[p][:5]) for p, uid in WALKERS.items()}
        return server

    servers: list = []
    yield make
    for server in servers:
        server.close()


def camera_marks(state) -> dict[str, int]:
    return {uid: c for uid, c in state.confidences().items() if uid in WALKERS.values() and 51 <= c <= 100}


def test_marks_made_while_the_api_is_down_and_flaky_all_arrive_once_it_is_back(tmp_path, engine, orl,
                                                                                face_settings, api):
    server = api()
    state = server.state
    write_door(tmp_path / "replay", orl, list(WALKERS)[:2])
    door = Door(tmp_path, server, engine, face_settings, outbox_options={"backoff_cap": 4.0})
    try:
        door.kiosk.login(*DEMO_LOGIN)
        enrol_everyone(door, server)
        door.start_class()
        state.set_knobs(unavailable_for=OUTAGE_S, failure_rate=0.3)  # mid-class: down, then 30 % failures
        door.kiosk.mark(ABSENT_BY_HAND[1], present=True)  # a mark by hand during the outage too
        door.wait_for_the_replay()
        assert state.clock() < state.knobs.unavailable_until, "the outage ended before the walkers were seen"
        assert state.stored == {}                             # nothing got through the outage
        assert not door.kiosk.outbox.healthy
        assert door.kiosk.feedback.error_active               # the door shows it cannot record
        wait_for(lambda: len(camera_marks(state)) == 2 and state.confidences().get(ABSENT_BY_HAND[1]) == 105,
                   timeout=OUTAGE_S + 90, what="every mark in the API")
        wait_for(lambda: door.kiosk.outbox.healthy, 30, "a healthy outbox")
        assert not door.kiosk.feedback.error_active
        door.kiosk.end_class()
    finally:
        door.close()
    assert {uid: len(values) for uid, values in state.stored.items()} == dict.fromkeys(WALKERS.values(), 1)
    assert state.count("SetAttendanceStudent") > 3          # failed tries were made, and retried
    assert "error" in door.signals() and door.signals().count("recognised") == 2


def test_tokens_that_expire_every_few_seconds_lose_and_duplicate_no_mark(tmp_path, engine, orl, face_settings,
                                                                         api):
    server = api(access_ttl=3)
    state = server.state
    write_door(tmp_path / "replay", orl, list(WALKERS), gap=12)  # about 13 s of class at 8 frames/s
    door = Door(tmp_path, server, engine, face_settings, fps=8.0)
    try:
        door.kiosk.login(*DEMO_LOGIN)
        enrol_everyone(door, server)
        door.start_class()
        door.wait_for_the_replay()
        door.kiosk.mark(ABSENT_BY_HAND[1], present=False)  # after its camera mark: the teacher corrects it
        assert door.kiosk.outbox.flush(30)
        door.kiosk.end_class()
    finally:
        door.close()
    stored = dict(state.stored)
    assert stored.keys() == set(WALKERS.values())
    assert all(len(v) == 1 and 51 <= v[0] <= 100 for uid, v in stored.items() if uid != ABSENT_BY_HAND[1])
    assert len(stored[ABSENT_BY_HAND[1]]) in (1, 2) and stored[ABSENT_BY_HAND[1]][-1] == -1
    assert state.confidences()[ABSENT_BY_HAND[1]] == -1
    assert state.count("Refresh") >= 3                    # the tokens really expired during the class


class FailingReplay(ReplaySource):
    """A replay camera that raises after ``fail_after`` frames, like a camera unplugged mid-stream."""

    def __init__(self, *args, fail_after: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.fail_after = fail_after

    def _read(self):
        if self._index >= self.fail_after:
            raise CameraError("The test camera was unplugged.")
        return super()._read()


def test_a_camera_that_raises_mid_stream_is_reopened_and_the_class_goes_on(tmp_path, engine, orl, face_settings,
                                                                          api):
    server = api()
    state = server.state
    write_door(tmp_path / "replay", orl, list(WALKERS)[:2])     # s1 (frames 3-16), then s3 (frames 25-38)
    opened = []

    def camera():
        first = not opened
        settings = door.settings
        source = (FailingReplay if first else ReplaySource)(
            tmp_path / "replay", width=settings.camera_width, height=settings.camera_height,
            fps=settings.replay_fps, **({"fail_after": 22} if first else {}))
        opened.append(source)
        return source

    door = Door(tmp_path, server, engine, face_settings, camera=camera)
    try:
        door.kiosk.login(*DEMO_LOGIN)
        enrol_everyone(door, server)
        door.start_class()
        wait_for(lambda: len(opened) >= 2, 60, "the camera reopened")
        door.wait_for_the_replay()
        stats = door.pipeline.stats()
        assert door.kiosk.outbox.flush(30)
        door.kiosk.end_class()
    finally:
        door.close()
    assert len(opened) == 2 and all(source.closed for source in opened)
    assert stats["camera_state"] == "ended" and stats["frame_errors"] == 0
    assert {uid: len(v) for uid, v in state.stored.items()} == {MARKED["s1"]: 1, MARKED["s3"]: 1}
    assert all(51 <= v[0] <= 100 for v in state.stored.values())
    assert stats["camera_error"] == "The test camera was unplugged."  # reported on the page's status
    assert door.signals() == ["recognised", "already_marked", "recognised"]  # s1, s1 again after the reopen, s3
    assert ERROR_CAMERA not in door.kiosk.feedback.error_reasons
