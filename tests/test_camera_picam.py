"""The Pi camera through a fake ``picamera2`` module (the real one exists only on Raspberry Pi OS)."""

from __future__ import annotations

import sys
from types import ModuleType, SimpleNamespace
from typing import ClassVar

import cv2
import numpy as np
import pytest

from kiosk.camera import open_source
from kiosk.camera.picam import to_rgb
from kiosk.errors import CameraError

SETTINGS = SimpleNamespace(camera_width=160, camera_height=120, replay_fps=10.0, replay_loop=False)


def i420(rgb: np.ndarray) -> np.ndarray:
    """What picamera2 returns for a YUV420 stream: (h * 3 / 2) rows x width bytes."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)


class FakePicamera2:
    """Just enough of picamera2.Picamera2 to check how the kiosk drives it."""

    instances: ClassVar[list[FakePicamera2]] = []
    fail_on_create: ClassVar[Exception | None] = None

    def __init__(self):
        if FakePicamera2.fail_on_create is not None:
            raise FakePicamera2.fail_on_create
        self.calls: list[str] = []
        self.config = None
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main=None, lores=None, **kwargs):
        return {"main": main, "lores": lores, **kwargs}

    def configure(self, config):
        self.config = config
        self.calls.append("configure")

    def start(self):
        self.calls.append("start")

    def capture_array(self, name="main"):
        self.calls.append(f"capture_array:{name}")
        width, height = self.config[name]["size"]
        rgb = np.zeros((height, width, 3), np.uint8)
        rgb[:, : width // 2] = (200, 30, 30)   # left half red
        rgb[:, width // 2:] = (30, 30, 200)    # right half blue
        return i420(rgb)

    def stop(self):
        self.calls.append("stop")

    def close(self):
        self.calls.append("close")


@pytest.fixture
def fake_picamera2(monkeypatch):
    module = ModuleType("picamera2")
    module.Picamera2 = FakePicamera2
    libcamera = ModuleType("libcamera")
    libcamera.ColorSpace = SimpleNamespace(Smpte170m=lambda: "smpte170m")
    monkeypatch.setitem(sys.modules, "picamera2", module)
    monkeypatch.setitem(sys.modules, "libcamera", libcamera)
    FakePicamera2.instances = []
    FakePicamera2.fail_on_create = None
    yield FakePicamera2
    FakePicamera2.fail_on_create = None


def test_missing_picamera2_is_a_clear_camera_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # makes `import picamera2` fail
    camera = open_source("picamera", SETTINGS)
    with pytest.raises(CameraError, match="python3-picamera2 is not installed"):
        camera.open()
    camera.close()


def test_detects_on_the_lores_stream_as_rgb(fake_picamera2):
    with open_source("picamera", SETTINGS) as camera:
        frame = camera.read()
    cam = fake_picamera2.instances[0]
    assert cam.config["lores"] == {"size": (160, 120), "format": "YUV420"}
    assert cam.config["main"]["size"] == (320, 240)
    assert cam.config["colour_space"] == "smpte170m"  # BT.601 limited range: what OpenCV's I420 conversion assumes
    assert cam.calls == ["configure", "start", "capture_array:lores", "stop", "close"]
    assert frame.image.shape == (120, 160, 3) and frame.image.dtype == np.uint8
    left, right = frame.image[60, 20].astype(int), frame.image[60, 140].astype(int)
    assert np.abs(left - (200, 30, 30)).max() < 12
    assert np.abs(right - (30, 30, 200)).max() < 12


def test_no_camera_found_is_a_camera_error(fake_picamera2):
    fake_picamera2.fail_on_create = IndexError("list index out of range")
    with pytest.raises(CameraError, match="No Raspberry Pi camera was found"):
        open_source("picamera", SETTINGS).open()


def test_close_is_idempotent(fake_picamera2):
    camera = open_source("picamera", SETTINGS)
    camera.open()
    camera.close()
    camera.close()
    assert fake_picamera2.instances[0].calls.count("close") == 1


def test_yuv420_rows_padded_to_a_wider_stride_are_cropped():
    stride, width, height = 192, 160, 120
    rgb = np.zeros((height, stride, 3), np.uint8)
    rgb[:, :width] = (10, 180, 40)
    rgb[:, width:] = (255, 0, 255)  # padding bytes the kiosk must not show
    image = to_rgb(i420(rgb), "YUV420", width, height)
    assert image.shape == (height, width, 3)
    assert np.abs(image[:, : width - 8].astype(int) - (10, 180, 40)).max() < 12


def test_picamera2_rgb888_is_bgr_in_memory():
    bgr = np.zeros((120, 160, 3), np.uint8)
    bgr[:] = (1, 2, 3)  # B, G, R
    assert tuple(to_rgb(bgr, "RGB888", 160, 120)[0, 0]) == (3, 2, 1)
    assert tuple(to_rgb(bgr, "BGR888", 160, 120)[0, 0]) == (1, 2, 3)


def test_unsupported_format_is_a_camera_error():
    with pytest.raises(CameraError, match="not supported"):
        to_rgb(np.zeros((4, 4), np.uint8), "SBGGR10", 4, 4)
