"""The replay camera: a folder of images played in name order, paced, ending or looping."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from kiosk.camera import open_source
from kiosk.camera.replay import ReplaySource
from kiosk.config import load_settings
from kiosk.errors import CameraError

W, H = 160, 120


class FakeClock:
    """Monotonic seconds that only move when the code under test sleeps."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def write_rgb(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (W, H)) -> None:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[:] = rgb[::-1]  # OpenCV writes BGR
    assert cv2.imwrite(str(path), image)


def centre(frame) -> tuple[int, ...]:
    h, w = frame.image.shape[:2]
    return tuple(int(v) for v in frame.image[h // 2, w // 2])


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    # Written out of order on purpose: playback follows the names.
    write_rgb(tmp_path / "c.png", (0, 0, 250))
    write_rgb(tmp_path / "a.png", (250, 0, 0))
    write_rgb(tmp_path / "b.bmp", (0, 250, 0))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def replay(folder: Path, clock: FakeClock, **kwargs) -> ReplaySource:
    options = {"width": W, "height": H, "fps": 10.0, "clock": clock, "sleep": clock.sleep, **kwargs}
    return ReplaySource(folder, **options)


def play_all(source: ReplaySource, limit: int = 50) -> list:
    frames = []
    while (frame := source.read()) is not None and len(frames) < limit:
        frames.append(frame)
    return frames


def test_plays_images_in_name_order_as_rgb_then_ends(folder):
    clock = FakeClock()
    with replay(folder, clock) as camera:
        frames = play_all(camera)
        assert camera.read() is None  # stays ended
    assert [centre(f) for f in frames] == [(250, 0, 0), (0, 250, 0), (0, 0, 250)]
    assert [f.index for f in frames] == [0, 1, 2]
    assert all(f.image.shape == (H, W, 3) and f.image.dtype == np.uint8 for f in frames)


def test_frames_are_paced_at_the_configured_fps(folder):
    clock = FakeClock()
    with replay(folder, clock, fps=4.0) as camera:
        frames = play_all(camera)
    assert [f.timestamp - frames[0].timestamp for f in frames] == pytest.approx([0.0, 0.25, 0.5])
    assert clock.sleeps == pytest.approx([0.25, 0.25])


def test_a_slow_reader_is_not_made_to_wait_again(folder):
    clock = FakeClock()
    with replay(folder, clock, fps=10.0) as camera:
        camera.read()
        clock.now += 5.0  # the consumer took 5 s: the next frame is overdue
        camera.read()
    assert clock.sleeps == []


def test_loop_starts_again_after_the_last_image(folder):
    clock = FakeClock()
    with replay(folder, clock, loop=True) as camera:
        frames = [camera.read() for _ in range(7)]
    assert [centre(f) for f in frames][3:6] == [centre(f) for f in frames][0:3]
    assert [f.index for f in frames] == list(range(7))


def test_images_are_letterboxed_to_the_detection_size(tmp_path):
    write_rgb(tmp_path / "wide.png", (200, 200, 200), size=(320, 80))  # 4:1 into 4:3
    with replay(tmp_path, FakeClock()) as camera:
        image = camera.read().image
    assert image.shape == (H, W, 3)
    # 320x80 scaled by 0.5 -> 160x40, centred: 40 black rows above and below.
    assert image[:40].max() == 0 and image[80:].max() == 0
    assert image[41:79].min() >= 190


def test_greyscale_pgm_becomes_three_channel_rgb(tmp_path):
    assert cv2.imwrite(str(tmp_path / "face.pgm"), np.full((112, 92), 77, np.uint8))
    with replay(tmp_path, FakeClock()) as camera:
        frame = camera.read()
    assert frame.image.shape == (H, W, 3)
    assert centre(frame) == (77, 77, 77)


def test_corrupt_image_is_skipped_and_counted(folder):
    (folder / "b2.jpg").write_bytes(b"this is not a jpeg")
    (folder / "b3.png").write_bytes(b"")
    with replay(folder, FakeClock()) as camera:
        frames = play_all(camera)
        assert camera.skipped == 2
    assert len(frames) == 3


def test_a_looping_folder_of_only_corrupt_images_is_an_error_not_a_busy_loop(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"junk")
    with replay(tmp_path, FakeClock(), loop=True) as camera, pytest.raises(CameraError, match="could be decoded"):
        camera.read()


def test_missing_folder_is_a_camera_error_with_a_plain_message(tmp_path):
    camera = replay(tmp_path / "nowhere", FakeClock())
    with pytest.raises(CameraError, match="does not exist"):
        camera.open()
    camera.close()


def test_folder_without_images_is_a_camera_error(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(CameraError, match="has no images"):
        replay(tmp_path, FakeClock()).open()


def test_reading_before_open_or_after_close_is_a_camera_error(folder):
    camera = replay(folder, FakeClock())
    with pytest.raises(CameraError, match="not open"):
        camera.read()
    camera.open()
    camera.close()
    camera.close()  # idempotent
    with pytest.raises(CameraError, match="not open"):
        camera.read()


def test_interrupt_ends_a_pacing_wait(folder):
    clock = FakeClock()  # never advances by itself: an uninterrupted wait would be 10 s long
    with ReplaySource(folder, width=W, height=H, fps=0.1, clock=clock) as camera:
        camera.read()
        camera.interrupt()
        assert camera.read() is not None


def test_open_source_builds_a_replay_from_settings(folder):
    settings = load_settings(env={"KIOSK_CAMERA_WIDTH": "320", "KIOSK_CAMERA_HEIGHT": "240",
                                  "KIOSK_REPLAY_FPS": "5", "KIOSK_REPLAY_LOOP": "1"})
    clock = FakeClock()
    with open_source(f"replay:{folder}", settings, clock=clock, sleep=clock.sleep) as camera:
        frames = [camera.read() for _ in range(4)]
    assert frames[0].image.shape == (240, 320, 3)
    assert frames[3].timestamp - frames[0].timestamp == pytest.approx(0.6)
    assert camera.description == f"replay:{folder}"


def test_open_source_rejects_an_unknown_spec():
    settings = SimpleNamespace(camera_width=W, camera_height=H, replay_fps=10.0, replay_loop=False)
    with pytest.raises(CameraError, match="is not one of"):
        open_source("webcam", settings)
