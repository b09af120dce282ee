"""The `kiosk` command: every subcommand answers --help, and bad settings give a plain message."""

import os
import subprocess
import sys

import pytest

from kiosk.cli import COMMANDS, main


def _run(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "kiosk", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_top_level_help_lists_every_command_and_setting():
    result = _run("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout
    assert "KIOSK_API_URL" in result.stdout and "KIOSK_CAMERA" in result.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: kiosk" in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_bad_setting_is_a_plain_message_not_a_traceback():
    result = _run("check-config", env_extra={"KIOSK_PORT": "eighty"})
    assert result.returncode == 1
    assert "Configuration error" in result.stderr and "KIOSK_PORT" not in result.stdout
    assert "Traceback" not in result.stderr


def test_missing_named_config_file(tmp_path):
    result = _run("--config", str(tmp_path / "nope.toml"), "check-config")
    assert result.returncode == 1
    assert "Cannot read config file" in result.stderr
