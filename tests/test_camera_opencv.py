"""OpenCV cameras: a video file written here, USB spec checks, RTSP credential masking."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from kiosk.camera import mask_credentials, open_source
from kiosk.camera.opencv import OpenCVSource
from kiosk.errors import CameraError

SETTINGS = SimpleNamespace(camera_width=160, camera_height=120, replay_fps=10.0, replay_loop=False)


class FakeClock:
    def __init__(self):
        self.now = 50.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """Six 320x240 MJPG frames at 10 fps: three red, then three blue (written BGR, as OpenCV does)."""
    path = tmp_path / "door.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    assert writer.isOpened()
    for bgr in [(0, 0, 255)] * 3 + [(255, 0, 0)] * 3:
        writer.write(np.full((240, 320, 3), bgr, np.uint8))
    writer.release()
    return path


def test_video_file_plays_as_rgb_at_detection_size_then_ends(video):
    clock = FakeClock()
    with open_source(f"file:{video}", SETTINGS, clock=clock, sleep=clock.sleep) as camera:
        frames = []
        while (frame := camera.read()) is not None:
            frames.append(frame)
        assert camera.read() is None
    assert len(frames) == 6
    assert all(f.image.shape == (120, 160, 3) for f in frames)
    red, blue = frames[0].image[60, 80], frames[5].image[60, 80]
    assert red[0] > 200 and red[2] < 60, "BGR was not turned into RGB"
    assert blue[2] > 200 and blue[0] < 60
    assert [f.index for f in frames] == list(range(6))
    # Paced at the file's own 10 fps on the injected clock.
    assert frames[5].timestamp - frames[0].timestamp == pytest.approx(0.5)


def test_video_keeps_its_aspect_when_resized(tmp_path):
    path = tmp_path / "wide.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (320, 80))
    writer.write(np.full((80, 320, 3), 255, np.uint8))
    writer.release()
    clock = FakeClock()
    with OpenCVSource(f"file:{path}", width=160, height=120, clock=clock, sleep=clock.sleep) as camera:
        image = camera.read().image
    assert image[:35].max() < 30 and image[85:].max() < 30  # letterbox bands
    assert image[45:75].min() > 200


def test_missing_video_file_is_a_plain_camera_error(tmp_path):
    with pytest.raises(CameraError, match="does not exist"):
        open_source(f"file:{tmp_path / 'none.avi'}", SETTINGS).open()


def test_a_file_that_is_not_a_video_cannot_be_opened(tmp_path):
    path = tmp_path / "notes.avi"
    path.write_text("not a video")
    with pytest.raises(CameraError, match="Could not open camera file:"):
        open_source(f"file:{path}", SETTINGS).open()


def test_usb_needs_a_device_number():
    with pytest.raises(CameraError, match="device number"):
        open_source("usb:front", SETTINGS).open()


@pytest.mark.parametrize(("text", "shown"), [
    ("rtsp://admin:hunter2@10.0.0.5:554/live", "rtsp://***@10.0.0.5:554/live"),
    ("rtsp://admin@10.0.0.5/live", "rtsp://***@10.0.0.5/live"),
    ("Could not open camera rtsps://u:p%40ss@cam/x.", "Could not open camera rtsps://***@cam/x."),
    ("rtsp://10.0.0.5/live", "rtsp://10.0.0.5/live"),
    ("replay:/srv/faces@2024", "replay:/srv/faces@2024"),
])
def test_credentials_are_masked(text, shown):
    assert mask_credentials(text) == shown


def test_rtsp_password_never_appears_in_description_or_errors():
    camera = open_source("rtsp://admin:hunter2@127.0.0.1:9/live", SETTINGS)  # nothing listens on port 9
    assert camera.description == "rtsp://***@127.0.0.1:9/live"
    assert "hunter2" not in repr(camera)
    with pytest.raises(CameraError) as caught:
        camera.open()
    assert "hunter2" not in str(caught.value)
    assert "rtsp://***@127.0.0.1:9/live" in str(caught.value)
    camera.close()


def test_unknown_spec_error_masks_credentials():
    with pytest.raises(CameraError) as caught:
        open_source("ftp://admin:hunter2@cam/live", SETTINGS)
    assert "hunter2" not in str(caught.value)
