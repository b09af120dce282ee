"""Privacy: a full class with uploads of large phone-sized photos on `kiosk run` (a subprocess), then
``find / -xdev -newer <marker>`` finds no file the kiosk wrote, and nothing the kiosk printed carries a token,
a password, a student's name or a student ID. Where strace is installed, the kiosk's own file-writing system
calls are traced too, so other processes' files (other test runs, editors, apt) are told apart by evidence.
Figures go to ``<results>/privacy.json``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk import demo_data
from kiosk.datasets import orl_padded_rgb
from kiosk.wiut.sandbox import SandboxServer
from tests.reliability.harness import KioskProcess, Page, free_port, record, wait_until

pytestmark = pytest.mark.slow
PSEUDO = ("/proc", "/sys", "/dev", "/run")
WRITE_CALLS = "openat,open,creat,rename,renameat,renameat2,mkdir,mkdirat,link,linkat,symlink,symlinkat,truncate"
WRITE_FLAGS = re.compile(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_TMPFILE")


def phone_photo(face: np.ndarray, rng: np.random.Generator) -> bytes:
    """A 4032x3024 JPEG (a phone's 12 MP) of a face on a textured background, 2-6 MB."""
    noise = rng.normal(120, 30, (756, 1008, 3)).clip(0, 255).astype(np.uint8)
    photo = cv2.resize(noise, (4032, 3024), interpolation=cv2.INTER_CUBIC)
    big = cv2.resize(face, (1100, int(1100 * face.shape[0] / face.shape[1])), interpolation=cv2.INTER_CUBIC)
    y, x = (3024 - big.shape[0]) // 2, (4032 - big.shape[1]) // 2
    photo[y:y + big.shape[0], x:x + big.shape[1]] = big
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def written_by_kiosk(trace: Path) -> set[str]:
    """Paths the traced kiosk created, opened for writing, renamed to or linked (successful calls only).

    An anonymous temporary file (``O_TMPFILE``: data on disk, no name, so ``find`` cannot see it) is
    reported as ``"O_TMPFILE in <folder>"``."""
    pending: dict[str, str] = {}
    paths = set()
    for line in trace.read_text(errors="replace").splitlines():
        pid, _, rest = line.partition(" ")
        if rest.rstrip().endswith("<unfinished ...>"):
            pending[pid] = rest.replace("<unfinished ...>", "")
            continue
        if "resumed>" in rest:
            rest = pending.pop(pid, "") + rest.split("resumed>", 1)[1]
        if "= -1" in rest or "(" not in rest:
            continue
        names = re.findall(r'"([^"]*)"', rest)
        call = rest.split("(", 1)[0].strip()
        if not names or (call in ("open", "openat") and not WRITE_FLAGS.search(rest)):
            continue
        paths.add(f"O_TMPFILE in {names[-1]}" if "O_TMPFILE" in rest else names[-1])
    return paths


def changed_files(marker: Path, skip: tuple[str, ...]) -> list[str]:
    """``find / -xdev -newer marker`` (files only), without ``skip`` prefixes."""
    found = subprocess.run(["find", "/", "-xdev", "-newer", str(marker), "-type", "f"], capture_output=True,
                           text=True, timeout=300).stdout.splitlines()
    return [p for p in found if not p.startswith(skip)]


def contains_any(path: str, needles: list[bytes]) -> bool:
    try:
        with open(path, "rb") as fh:
            data = fh.read(50_000_000)
    except OSError:
        return False
    return any(n in data for n in needles)


def test_a_full_class_leaves_no_file_and_prints_no_secret(world, face_settings, tmp_path, orl):
    rng = np.random.default_rng(3)
    newcomer = demo_data.user_id_of(sorted(demo_data.NOT_ENROLLED)[0])
    person = sorted(demo_data.NOT_ENROLLED)[0]
    photos = [phone_photo(orl_padded_rgb(orl[person][k]), rng) for k in range(3)]
    replay = demo_data.build_replay(face_settings)
    kiosk_tmp, state_dir, trace = tmp_path / "kiosk-tmp", tmp_path / "state", tmp_path / "trace.txt"
    kiosk_tmp.mkdir()
    strace = shutil.which("strace")
    prefix = (strace, "-f", "-qq", "-e", f"trace={WRITE_CALLS}", "-o", str(trace)) if strace else ()
    marker = tmp_path / "marker"
    marker.touch()
    time.sleep(1.1)                                   # later files are strictly newer than the marker
    uploads = []
    with SandboxServer(world.state) as api:
        kiosk = KioskProcess(tmp_path, {"KIOSK_API_URL": api.url, "KIOSK_CAMERA": f"replay:{replay}",
                                        "KIOSK_STATE_DIR": str(state_dir), "KIOSK_MODELS_DIR": face_settings.models_dir,
                                        "KIOSK_CACHE_DIR": face_settings.cache_dir, "TMPDIR": str(kiosk_tmp)},
                             prefix=prefix)
        try:
            assert kiosk.wait_ready(120), kiosk.text()
            with Page(kiosk.url, timeout=120) as page:
                assert page.login().status_code == 200
                for photo in photos:
                    answer = page.call("POST", "/api/enroll", data={"userId": newcomer},
                                       files=[("image", ("IMG_0001.jpg", photo, "image/jpeg"))])
                    uploads.append((len(photo), answer.status_code))
                    assert answer.status_code in (201, 422), answer.text
                assert page.start(world.demo).status_code == 201
                expected = set(world.demo.expected_present)
                assert wait_until(lambda: page.status()["camera"]["state"] == "ended", 120)
                assert wait_until(lambda: world.delivered(world.demo.class_id) >= expected, 60)
                assert page.end().status_code == 200
                assert page.call("POST", "/api/logout").status_code == 200
        finally:
            code = kiosk.stop()
    assert code == 0, kiosk.text()
    skip = (*PSEUDO, str(tmp_path) + "/")
    changed = changed_files(marker, skip)
    secrets = [s.encode() for s in [*world.tokens, demo_data.DEMO_PASSWORD, *world.names_and_ids()] if s]
    traced = written_by_kiosk(trace) if strace else set()
    # traced: only the kiosk's own files are read; untraced: every changed file (other work may then show up)
    leaking = [p for p in (set(changed) & traced if strace else changed) if contains_any(p, secrets)]
    allowed = ("/dev/", str(state_dir))                 # the spool's folder is the one place the kiosk may write
    own = sorted(p for p in traced if not p.startswith(allowed) and "__pycache__" not in p)
    by_kiosk = sorted(set(changed) & traced)
    output = kiosk.text()
    printed = sorted({s.decode() for s in secrets if s.decode() in output})
    record("privacy", "full class with phone photos", {
        "uploads": [{"bytes": n, "status": s} for n, s in uploads], "files_changed_on_disk": len(changed),
        "changed_by_other_processes": len(set(changed) - traced), "written_by_kiosk": by_kiosk,
        "other_processes_folders": dict(Counter("/".join(p.split("/")[:2]) for p in set(changed) - traced)),
        "kiosk_write_calls_outside_pseudo_files": own, "strace": bool(strace), "secrets_in_changed_files": leaking,
        "secrets_printed": len(printed), "output_lines": len(kiosk.output),
        "kiosk_tmp_files": len(list(kiosk_tmp.iterdir())),
        "spool_left": (state_dir / "outbox-spool.json").exists()})
    assert sum(n for n, _ in uploads) > 6_000_000
    assert not printed, f"the kiosk printed {len(printed)} secret(s) or personal data"
    assert not leaking, leaking
    assert not by_kiosk, by_kiosk
    assert own == [], own      # e.g. "O_TMPFILE in <TMPDIR>": an upload buffered to disk by the web server
    assert list(kiosk_tmp.iterdir()) == [] and not (state_dir / "outbox-spool.json").exists()
    assert free_port()  # loopback still usable (nothing left listening on a fixed port)
