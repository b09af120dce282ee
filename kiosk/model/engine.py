"""The recognition engine: detector + embedder + quality gate behind one lock, built once from settings.

The LiteRT interpreters are not thread-safe, so every call takes the engine's lock: one worker
(the camera pipeline or an enrolment request) uses them at a time.

Example::

    with Engine.from_settings(settings) as engine:
        for det, quality in engine.faces(frame_rgb):
            ...
        vectors = engine.embed(frame_rgb, [det for det, q in engine.faces(frame_rgb) if q.ok])
        vector = engine.embed_photo(jpeg_bytes)        # enrolment; EnrollmentRefused says why not
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from kiosk.errors import EnrollmentRefused
from kiosk.model.align import align
from kiosk.model.quality import Quality, assess
from kiosk.model.types import Detection, Detector, Embedder

MAX_PHOTO_PIXELS = 40_000_000  # refused before decoding
MAX_PHOTO_SIDE = 2048  # larger photos are shrunk to this (px, longest side) after decoding
PHOTO_PAD = 0.25  # tight portrait crops are retried padded by this fraction of their longest side
OTHER_FACE_RATIO = 0.4  # faces at least this fraction of the largest face's width count as people


@dataclass(frozen=True)
class Gate:
    """Quality-gate thresholds: minimum face width (px), minimum sharpness, maximum yaw (0..1)."""

    min_face_px: float = 40
    min_sharpness: float = 20.0
    max_yaw: float = 0.45


def parse_roi(text: str) -> tuple[float, float, float, float] | None:
    """The ``detect_roi`` setting ('x,y,w,h' fractions) as a tuple; None for an empty string (whole frame)."""
    if not text.strip():
        return None
    x, y, w, h = (float(p) for p in text.split(","))
    return (x, y, w, h)


class Engine:
    """Detector, embedder and quality gate, used by one caller at a time."""

    def __init__(self, detector: Detector, embedder: Embedder, gate: Gate | None = None):
        self.detector = detector
        self.embedder = embedder
        self.gate = gate or Gate()
        self._lock = threading.RLock()
        self._closed = False

    @classmethod
    def from_settings(cls, settings) -> Engine:
        """BlazeFace (settings.detector) and the configured embedder, with the quality-gate settings."""
        from kiosk.model.assets import model_path
        from kiosk.model.detector import VARIANTS, BlazeFaceDetector

        detector = BlazeFaceDetector(
            model_path(settings, VARIANTS[settings.detector].file_name), variant=settings.detector,
            threshold=settings.detect_threshold, threads=settings.threads,
            roi=parse_roi(settings.detect_roi), tiles=settings.detect_tiles)
        try:
            embedder = _embedder_from_settings(settings)
        except BaseException:
            detector.close()
            raise
        return cls(detector, embedder, Gate(settings.min_face_px, settings.min_sharpness, settings.max_yaw))

    @property
    def method(self) -> str:
        """Name of the embedding space (e.g. "mobilefacenet-v1")."""
        return self.embedder.method

    @property
    def dim(self) -> int:
        """Length of the vectors this engine makes."""
        return self.embedder.dim

    # --- the camera path ------------------------------------------------------------------------
    def detect(self, frame_rgb: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 frame, best score first."""
        with self._lock:
            return self.detector.detect(frame_rgb)

    def faces(self, frame_rgb: np.ndarray) -> list[tuple[Detection, Quality]]:
        """Faces in an RGB uint8 frame, each with its quality verdict, best score first."""
        with self._lock:
            return [(det, self._assess(frame_rgb, det)) for det in self.detector.detect(frame_rgb)]

    def embed(self, frame_rgb: np.ndarray, detections: list[Detection]) -> np.ndarray:
        """(len(detections), dim) float32 unit vectors of those faces in ``frame_rgb``."""
        with self._lock:
            return self.embedder.embed([self.embedder.align(frame_rgb, d) for d in detections])

    def _assess(self, frame_rgb: np.ndarray, det: Detection) -> Quality:
        g = self.gate
        return assess(frame_rgb, det, min_face_px=g.min_face_px, min_sharpness=g.min_sharpness, max_yaw=g.max_yaw,
                      aligned=align(frame_rgb, det))

    # --- enrolment --------------------------------------------------------------------------------
    def embed_photo(self, image: bytes | np.ndarray) -> np.ndarray:
        """The (dim,) unit vector of the one person in an enrolment photo.

        ``image`` is encoded file bytes (JPEG, PNG, WebP, BMP; decoded in memory) or an RGB uint8
        array. Raises EnrollmentRefused with the reason: not an image, truncated, too large, no face,
        several faces, face too small, too blurred, turned away.
        """
        rgb = _shrink(decode_photo(image) if isinstance(image, bytes | bytearray | memoryview) else _as_rgb(image))
        with self._lock:
            frame, det = self._single_face(rgb)
            return self.embedder.embed([self.embedder.align(frame, det)])[0]

    def _single_face(self, rgb: np.ndarray) -> tuple[np.ndarray, Detection]:
        frame, dets = rgb, self.detector.detect_with(rgb)
        if not dets:  # a tight portrait crop: BlazeFace wants some background around the face
            pad = round(PHOTO_PAD * max(rgb.shape[:2]))
            frame = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            dets = self.detector.detect_with(frame)
        if not dets:
            raise EnrollmentRefused("No face found in the photo.")
        largest = max(dets, key=lambda d: d.width)
        people = [d for d in dets if d.width >= OTHER_FACE_RATIO * largest.width]
        if len(people) > 1:
            raise EnrollmentRefused(f"{len(people)} faces found: one person per photo.")
        quality = self._assess(frame, largest)
        if not quality.ok:
            text = "; ".join(quality.reasons)
            raise EnrollmentRefused(text[0].upper() + text[1:] + ".")
        return frame, largest

    # --- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Release both models; safe to call twice."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self.detector.close()
                self.embedder.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _embedder_from_settings(settings) -> Embedder:
    if settings.embedder == "dlib":
        from kiosk.model.baseline import DlibEmbedder

        return DlibEmbedder()
    from kiosk.model.assets import model_path
    from kiosk.model.embedder import MobileFaceNetEmbedder

    return MobileFaceNetEmbedder(model_path(settings, "MobileFaceNet.tflite"), threads=settings.threads)


# --- photo decoding (in memory, size checked before decoding) ------------------------------------
def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from the header of a JPEG, PNG, WebP or BMP file; None for anything else."""
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_size(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        return _webp_size(data)
    if data[:2] == b"BM" and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return abs(w), abs(h)
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _truncated(data: bytes) -> bool:
    if data[:2] == b"\xff\xd8":
        return b"\xff\xd9" not in data[-256:]
    if data[:4] == b"\x89PNG":
        return b"IEND" not in data[-64:]
    if data[:4] == b"RIFF":
        return struct.unpack("<I", data[4:8])[0] + 8 > len(data)
    if data[:2] == b"BM":
        return struct.unpack("<I", data[2:6])[0] > len(data)
    return False


def decode_photo(data: bytes) -> np.ndarray:
    """An RGB uint8 array from encoded bytes, refusing non-images, truncated files and > 40 megapixels.

    The size comes from the file header, so an oversized image is never allocated.
    """
    data = bytes(data)
    size = image_size(data)
    if size is None:
        raise EnrollmentRefused("Not an image: send a JPEG, PNG, WebP or BMP photo.")
    if size[0] * size[1] > MAX_PHOTO_PIXELS:
        megapixels = size[0] * size[1] / 1e6
        raise EnrollmentRefused(f"The photo is too large ({megapixels:.0f} megapixels; at most 40).")
    if size[0] == 0 or size[1] == 0 or _truncated(data):
        raise EnrollmentRefused("The image file is truncated or damaged: send it again.")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise EnrollmentRefused("Not an image, or a damaged one: send a JPEG, PNG, WebP or BMP photo.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise EnrollmentRefused("Not an image: expected an RGB uint8 array.")
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
    return array[:, :, :3] if array.shape[2] == 4 else array


def _shrink(rgb: np.ndarray) -> np.ndarray:
    scale = MAX_PHOTO_SIDE / max(rgb.shape[:2])
    if scale >= 1:
        return rgb
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
