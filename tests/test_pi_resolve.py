"""The Raspberry Pi install resolves: aarch64 wheels only, NumPy 1.x for Debian's picamera2 stack.

A pip dry run for CPython 3.11 on manylinux aarch64 with packaging/pi-constraints.txt. It needs the
package index (CI has it), so it is marked slow. Measured here: about 6 s with a warm pip cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO / "packaging" / "pi-constraints.txt"
# pip takes --platform tags literally: list every glibc level a Bookworm Pi (glibc 2.36) accepts.
GLIBC_MINORS = (17, 24, 26, 27, 28, 31, 34, 35)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2])


def _dependencies() -> list[str]:
    with (REPO / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["project"]["dependencies"]


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict[str, tuple[str, str]]:
    """name (lower case) -> (version, wheel file name) of what pip would install on the Pi."""
    tmp = tmp_path_factory.mktemp("pi")
    platforms = ["--platform", "manylinux2014_aarch64"]
    for minor in GLIBC_MINORS:
        platforms += ["--platform", f"manylinux_2_{minor}_aarch64"]
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--disable-pip-version-check",
           "--report", str(tmp / "report.json"), "--target", str(tmp / "target"), "--only-binary=:all:",
           "--python-version", "3.11", "--implementation", "cp", *platforms, "-c", str(CONSTRAINTS),
           *_dependencies()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, f"pip could not resolve for the Pi:\n{done.stderr[-3000:]}"
    report = json.loads((tmp / "report.json").read_text())
    return {item["metadata"]["name"].lower(): (item["metadata"]["version"],
                                               item["download_info"]["url"].rsplit("/", 1)[-1])
            for item in report["install"]}


@pytest.mark.slow
def test_everything_is_an_aarch64_or_pure_wheel(resolved):
    for name, (_version_text, filename) in resolved.items():
        assert filename.endswith(".whl"), f"{name} would be built from source on the Pi"
        tags = filename[:-4].split("-")[-1]
        assert "aarch64" in tags or tags == "any", f"{name}: {filename} is not for aarch64"


@pytest.mark.slow
def test_numpy_stays_below_2_for_picamera2(resolved):
    assert _version(resolved["numpy"][0]) < (2, 0)
    assert _version(resolved["opencv-python-headless"][0]) < (4, 11)


@pytest.mark.slow
def test_the_runtime_and_web_stack_are_all_there(resolved):
    for name in ("ai-edge-litert", "numpy", "opencv-python-headless", "flask", "waitress", "gpiozero",
                 "requests", "pyjwt"):
        assert name in resolved, f"{name} is missing from the Pi resolution"
    assert _version(resolved["ai-edge-litert"][0]) >= (2, 3)
