"""CaptureThread: reading in the background, dropping stale frames, reconnecting with backoff."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk.camera import CaptureStatus, CaptureThread, Frame, FrameSource
from kiosk.camera.replay import ReplaySource
from kiosk.errors import CameraError
from tests.helpers import wait_until

FAST = (0.001,)


class ScriptedSource(FrameSource):
    """Gives ``frames`` frames, then ends (None), fails (``fail``), or blocks briefly forever (None)."""

    def __init__(self, frames: int | None, *, fail: BaseException | None = None,
                 fail_open: BaseException | None = None, gate: threading.Event | None = None):
        super().__init__("scripted")
        self.remaining, self.fail, self.fail_open, self.gate = frames, fail, fail_open, gate
        self.index = 0
        self.closed_count = 0

    def _open(self) -> None:
        if self.fail_open is not None:
            raise self.fail_open

    def _read(self) -> Frame | None:
        if self.gate is not None:
            self.gate.wait()
        if self.remaining is not None and self.index >= self.remaining:
            if self.fail is not None:
                raise self.fail
            return None
        if self.remaining is None:
            time.sleep(0.001)  # an endless camera, a little slower than a spin
        frame = Frame(np.zeros((4, 4, 3), np.uint8), float(self.index), self.index)
        self.index += 1
        return frame

    def _close(self) -> None:
        self.closed_count += 1


class Factory:
    """Hands out the scripted sources in order (each is used once), keeping them for inspection."""

    def __init__(self, *sources: ScriptedSource):
        self.pending = list(sources)
        self.made: list[ScriptedSource] = []

    def __call__(self) -> ScriptedSource:
        source = self.pending.pop(0)
        self.made.append(source)
        return source


def drain(capture: CaptureThread) -> list[Frame]:
    frames = []
    while (frame := capture.get(timeout=10)) is not None:
        frames.append(frame)
    return frames


@pytest.fixture
def baseline_threads():
    before = threading.active_count()
    yield before
    assert wait_until(lambda: threading.active_count() == before), "a capture thread leaked"


def test_delivers_every_frame_then_ends(baseline_threads):
    factory = Factory(ScriptedSource(5))
    with CaptureThread(factory, queue_size=10) as capture:
        frames = drain(capture)
        assert capture.state == "ended"
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert capture.frames == 5 and capture.dropped == 0 and capture.reopen_count == 0
    assert factory.made[0].closed


def test_camera_that_fails_is_reopened_with_backoff_and_recovers(baseline_threads):
    states: list[CaptureStatus] = []
    broken = [ScriptedSource(3, fail=CameraError("Camera usb:0 stopped delivering frames.")) for _ in range(2)]
    factory = Factory(*broken, ScriptedSource(4))
    with CaptureThread(factory, queue_size=100, backoff=FAST, on_state=states.append) as capture:
        frames = drain(capture)
        status = capture.status()
    assert len(frames) == 3 + 3 + 4
    assert status.state == "ended"
    assert status.reopen_count == 2
    assert status.last_error == "Camera usb:0 stopped delivering frames."
    assert [s.state for s in states] == ["running", "reconnecting", "running", "reconnecting", "running", "ended",
                                         "stopped"]
    assert all(source.closed_count == 1 for source in factory.made)


def test_camera_that_cannot_be_opened_is_retried_and_the_reason_reported(baseline_threads):
    states: list[str] = []
    missing = [ScriptedSource(0, fail_open=CameraError("Could not open camera usb:0.")) for _ in range(2)]
    factory = Factory(*missing, ScriptedSource(2))
    with CaptureThread(factory, backoff=FAST, on_state=lambda s: states.append(s.state)) as capture:
        frames = drain(capture)
    assert len(frames) == 2
    assert capture.last_error == "Could not open camera usb:0."
    assert states == ["reconnecting", "running", "ended", "stopped"]  # a repeated reason is reported once
    assert capture.reopen_count == 2


def test_unexpected_exception_is_reported_in_plain_words_not_a_crash(baseline_threads):
    factory = Factory(ScriptedSource(1, fail=ValueError("cv2 internal detail")), ScriptedSource(1))
    with CaptureThread(factory, queue_size=10, backoff=FAST) as capture:
        frames = drain(capture)
    assert len(frames) == 2
    assert capture.last_error == "The camera failed unexpectedly (ValueError)."


def test_error_messages_never_show_a_stream_password(baseline_threads):
    error = CameraError("Could not open camera rtsp://admin:hunter2@10.0.0.5/live.")
    factory = Factory(ScriptedSource(0, fail_open=error), ScriptedSource(0))
    with CaptureThread(factory, backoff=FAST) as capture:
        drain(capture)
    assert "hunter2" not in capture.last_error
    assert "rtsp://***@10.0.0.5" in capture.last_error


def test_slow_consumer_gets_the_newest_frames_and_drops_are_counted(baseline_threads):
    with CaptureThread(Factory(ScriptedSource(10)), queue_size=2) as capture:
        assert wait_until(lambda: capture.state == "ended")
        frames = drain(capture)
    assert [f.index for f in frames] == [8, 9]
    assert capture.frames == 10 and capture.dropped == 8


def test_stop_joins_quickly_and_closes_the_camera(baseline_threads):
    source = ScriptedSource(None)  # never ends
    capture = CaptureThread(Factory(source)).start()
    assert capture.get(timeout=10) is not None
    capture.stop()
    assert not capture.alive
    assert capture.state == "stopped"
    assert source.closed
    while capture.get(timeout=0) is not None:  # what was read before stopping may still be taken
        pass
    assert capture.get() is None  # no timeout, yet no blocking once stopped
    capture.stop()  # idempotent


def test_stop_interrupts_a_long_backoff_wait(baseline_threads):
    def always_missing() -> ScriptedSource:
        return ScriptedSource(0, fail_open=CameraError("Could not open camera usb:0."))

    capture = CaptureThread(always_missing, backoff=(0.001, 600.0)).start()
    assert wait_until(lambda: capture.reopen_count == 1 and capture.state == "reconnecting")
    capture.stop(timeout=5)
    assert not capture.alive and capture.reopen_count == 1


def test_backoff_starts_over_once_frames_flow_again(baseline_threads):
    # Each source gives a frame, then fails: with the backoff reset, reconnecting never reaches 600 s.
    capture = CaptureThread(
        lambda: ScriptedSource(1, fail=CameraError("Camera usb:0 stopped delivering frames.")),
        backoff=(0.001, 600.0),
    ).start()
    assert wait_until(lambda: capture.reopen_count >= 5)
    capture.stop(timeout=5)
    assert not capture.alive


def test_stop_interrupts_a_slow_replay(tmp_path: Path, baseline_threads):
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((120, 160, 3), np.uint8))
    capture = CaptureThread(lambda: ReplaySource(tmp_path, width=160, height=120, fps=0.1)).start()
    assert capture.get(timeout=10) is not None  # the second frame is 10 s away
    capture.stop(timeout=5)
    assert not capture.alive


def test_fps_is_a_moving_average_on_the_injected_clock(baseline_threads):
    ticks = iter(np.arange(0.0, 100.0, 0.1))
    with CaptureThread(Factory(ScriptedSource(6)), queue_size=10, clock=lambda: float(next(ticks))) as capture:
        drain(capture)
    assert capture.fps == pytest.approx(10.0)


def test_get_times_out_with_none_while_the_camera_is_silent(baseline_threads):
    gate = threading.Event()
    with CaptureThread(Factory(ScriptedSource(1, gate=gate))) as capture:
        assert capture.get(timeout=0.01) is None
        assert capture.state == "running"
        gate.set()
        assert capture.get(timeout=10) is not None


def test_start_twice_and_after_the_end_is_harmless(baseline_threads):
    capture = CaptureThread(Factory(ScriptedSource(1)))
    capture.start()
    capture.start()
    assert wait_until(lambda: capture.state == "ended")
    capture.start()
    capture.stop()
    assert capture.state == "stopped"


def test_a_failing_state_listener_does_not_stop_the_camera(baseline_threads, capsys):
    def listener(status: CaptureStatus) -> None:
        raise RuntimeError("listener bug")

    with CaptureThread(Factory(ScriptedSource(3)), queue_size=10, on_state=listener) as capture:
        frames = drain(capture)
    assert len(frames) == 3
    assert "listener failed" in capsys.readouterr().err
