"""systemd/kiosk.service: parsed like systemd reads it, the keys the kiosk relies on are there."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "kiosk.service"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values in order (a key may repeat); comments and blank lines skipped."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        assert section is not None and "=" in line, f"not a unit-file line: {raw!r}"
        key, value = line.split("=", 1)
        sections[section][key.strip()].append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text())["Service"]


@pytest.mark.parametrize(("key", "value"), [
    ("Type", "notify"), ("Restart", "on-failure"), ("WatchdogSec", "30"), ("User", "kiosk"),
    ("StateDirectory", "kiosk"), ("RuntimeDirectory", "kiosk"), ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"), ("PrivateTmp", "yes"), ("NoNewPrivileges", "yes"),
    ("EnvironmentFile", "-/etc/kiosk/env"), ("ExecStart", "/opt/kiosk/.venv/bin/kiosk run"),
])
def test_the_service_has(service, key, value):
    assert service[key] == [value]


def test_the_kiosk_user_may_use_the_camera_and_the_pins(service):
    assert set(" ".join(service["SupplementaryGroups"]).split()) >= {"video", "gpio"}


def test_only_the_state_and_runtime_folders_are_writable(service):
    assert " ".join(service["ReadWritePaths"]).split() == ["/var/lib/kiosk", "/run/kiosk"]


def test_output_goes_to_the_journal_not_to_files(service):
    for key in ("StandardOutput", "StandardError"):
        assert service.get(key, ["journal"]) == ["journal"]
    assert not any("LogsDirectory" in key for key in service)


def test_stopping_leaves_time_for_the_outbox_flush(service):
    assert 10 <= int(service["TimeoutStopSec"][0]) <= 30  # 5 s flush + spool + web shutdown


def test_it_starts_at_boot():
    assert parse_unit(UNIT.read_text())["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_itself_accepts_the_unit(tmp_path):
    """``systemd-analyze verify`` (where installed) finds nothing wrong but the absent program."""
    import shutil
    import subprocess

    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    copy = tmp_path / "kiosk.service"
    copy.write_text(UNIT.read_text())
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60,
                          check=False)
    complaints = [line for line in (done.stdout + done.stderr).splitlines()
                  if line.strip() and "/opt/kiosk/.venv/bin/kiosk" not in line]
    assert complaints == []
