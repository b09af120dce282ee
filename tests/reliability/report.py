"""Render the reliability suites' figures into docs/reliability.md: ``python -m tests.reliability.report``.

Reads the JSON files the suites wrote (``$RELIABILITY_RESULTS``, default ``<tmp>/kiosk-reliability``) and
writes the Markdown page (``--out``, default docs/reliability.md). Each row also says whether it meets the
issue's bar, judged from the figures with the same rules the tests assert.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

from tests.reliability.harness import results_dir

REPO = Path(__file__).resolve().parents[2]
FAULT_ORDER = ["none (baseline)", "30% of posts failing", "latency 200-2000 ms", "60 s of unavailability",
               "tokens expiring every 2 s", "refresh token revoked mid-class", "malformed roster answers",
               "a student with a corrupt embedding"]
MISSING = "_not run_"


def load(folder: Path, suite: str) -> dict[str, Any]:
    path = folder / f"{suite}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def ok(flag: bool) -> str:
    return "yes" if flag else "**NO**"


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    return f"{os.cpu_count()} CPU(s) {model}, Python {platform.python_version()}, {platform.system()}"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def fault_section(data: dict[str, Any]) -> list[str]:
    out = ["## Fault suite (`-m slow`, tests/reliability/test_faults.py)", "",
           "Real classes: the demo replay of real ORL faces (8 enrolled roster students walk past; a student of "
           "another module, a stranger and a roster student who is not enrolled too), the real engine, pipeline "
           "and outbox wired as `kiosk run` wires them, driven through the page's JSON API, against the sandbox "
           "university with its fault knobs. *Duplicates* are accepted SetAttendanceStudent writes beyond the "
           "first per student; *wrong* are marks for anyone but the expected walkers.", ""]
    rows = []
    for name in [*FAULT_ORDER, *sorted(set(data) - set(FAULT_ORDER))]:
        f = data.get(name)
        if f is not None and "expected" not in f:
            continue                                  # a side figure, shown below the table
        if f is None:
            rows.append([name, MISSING, "", "", "", "", "", "", ""])
            continue
        meets = f["delivered"] == f["expected"] and not f["duplicates"] and not f["wrong"]
        if "relogin_status" in f:   # the same teacher's new login keeps the class; the page said "log in again"
            meets = meets and f["relogin_status"] == 200 and f["class_still_running_after_relogin"]
            meets = meets and "log in again" in f["page_said"]
        notes = []
        for key in ("refreshes", "delivered_during_outage", "last_delivery_after_outage_s", "waiting_when_login_needed",
                    "relogin_status", "class_still_running_after_relogin", "page_said", "start_refused"):
            if key in f:
                notes.append(f"{key.replace('_', ' ')}: {f[key]}")
        rows.append([name, f["expected"], f["delivered"], f["duplicates"], f["wrong"], f.get("posts_tried", ""),
                     f.get("seconds", ""), ok(meets), "; ".join(notes)])
    told = data.get("what the page is told after the revocation")
    extra = [f"After the refresh token is revoked the page's calls answer: {'; '.join(told['answers'])}", ""] \
        if told else []
    return [*out, *table(["fault", "expected", "delivered", "duplicates", "wrong", "posts tried", "s",
                          "meets the bar", "notes"], rows), "", *extra]


def soak_section(data: dict[str, Any]) -> list[str]:
    out = ["## Soak (`-m soak`, tests/reliability/test_soak.py)", ""]
    if not data:
        return [*out, MISSING, ""]
    for name, s in sorted(data.items()):
        out += [f"### {name}", "", *soak_table(s), ""]
    return [*out, "The soak runs the kiosk in the test's process; RSS, threads and fds are that process's "
            "(the sandbox university shares it). A run with the environment variable MALLOC_ARENA_MAX set is "
            "the same test with glibc's number of malloc arenas capped.", ""]


def soak_table(s: dict[str, Any]) -> list[str]:
    base, after = s["threads_fds_baseline"], s["threads_fds_after"]
    marks_ok = all(m["delivered"] == m["expected"] and not m["duplicates"] and not m["wrong"]
                   for m in s["marks"].values())
    steps = ", ".join(f"{t:.0f} s: {mb}" for t, mb in s["rss_samples"][:: max(1, len(s["rss_samples"]) // 10)])
    rows = [["duration", f"{s['seconds']} s, {s['classes']} classes started and ended "
             f"({s.get('class_seconds', '?')} s each)", ""],
            ["frames processed", f"{s['frames_processed']} ({s['mean_fps']} frames/s over the whole run)", ""],
            ["frames dropped (counter) / read but neither processed nor counted",
             f"{s['frames_dropped']} / {s['frames_missed']} (at most 2 a class may sit in the capture queue)",
             ok(all(0 <= c["missed"] <= 2 for c in s["per_class"]))],
            ["RSS (MB) over time", steps, ""],
            [f"RSS growth from minute {s['rss_growth_from_minute']} to the end", f"{s['rss_growth_mb']} MB",
             ok(s["rss_growth_mb"] <= 20)],
            ["threads, fds: baseline -> after", f"{base[0]}, {base[1]} -> {after[0]}, {after[1]}",
             ok(s["back_to_baseline"])],
            ["marks per class id (expected/delivered/duplicates/wrong)",
             "; ".join(f"{k}: {m['expected']}/{m['delivered']}/{m['duplicates']}/{m['wrong']}"
                       for k, m in s["marks"].items()), ok(marks_ok)]]
    return table(["figure", "value", "meets the bar"], rows)


def load_section(data: dict[str, Any]) -> list[str]:
    out = ["## Load (`-m load`, tests/reliability/test_load.py + loadgen.py as a second process)", ""]
    s = data.get("page under load during a class")
    if s is None:
        return [*out, MISSING, ""]
    rows = [["live streams open (cap)", f"{s['streams_open']} ({s['sse_cap']})", ok(s["streams_open"] == s["sse_cap"])],
            ["one stream over the cap", f"{s['over_cap_status']} in {s['over_cap_seconds']} s",
             ok(s["over_cap_status"] == 503 and s["over_cap_seconds"] < 5)],
            ["API calls", f"{s['calls']} in {s['seconds']} s ({s['rate']}/s), statuses {s['statuses']}", ""],
            ["API latency p50 / p95 / p99 / max", f"{s['p50_ms']:.0f} / {s['p95_ms']:.0f} / {s['p99_ms']:.0f} / "
             f"{s['max_ms']:.0f} ms", ok(s["p99_ms"] < 500)],
            ["recognition frames/s during the load", s["recognition_fps"], "reported"],
            ["marks delivered during the load", f"{s['marks_delivered']} of {s['marks_expected']}",
             ok(s["marks_delivered"] == s["marks_expected"])]]
    return out + table(["figure", "value", "meets the bar"], rows) + [""]


def bad_input_section(data: dict[str, Any]) -> list[str]:
    out = ["## Bad input (`-m slow`, tests/reliability/test_bad_input.py)", ""]
    if not data:
        return [*out, MISSING, ""]
    rows = []
    fuzz = data.get("openapi fuzzing")
    if fuzz:
        rows.append(["OpenAPI fuzzing (hypothesis, bodies from the description + JSON junk)",
                     f"{fuzz['requests']} requests on {fuzz['operations']} operations; undocumented answers: "
                     f"{', '.join(fuzz['undocumented_statuses']) or 'none'}",
                     ok(not fuzz["undocumented_statuses"] and not fuzz["server_errors"])])
    for name, f in data.get("uploads", {}).items():
        if isinstance(f, dict):
            rows.append([f"upload: {name}", f"{f['status']} \"{f['error']}\"", ok(f["status"] in (413, 415, 422, 502))])
    for name, status in data.get("sessions", {}).items():
        if name != "recordedAt":
            rows.append([name, status, ok(status in (401, 403))])
    flood = data.get("100 wrong logins")
    if flood:
        rows.append(["100 wrong logins in a row", f"{flood['401']} x 401 then {flood['429']} x 429 "
                     f"(Retry-After {flood['retry_after']} s) in {flood['seconds']} s; {flood['upstream_login_calls']} "
                     "reached the university", ok(flood["429"] == 95)])
    trav = data.get("kiosk enroll path traversal")
    if trav:
        rows.append(["`kiosk enroll` path traversal (7 IDs + a symlink out of the folder)",
                     f"{trav['refused']} of {trav['ids_tried']} refused, {trav['stored']} stored",
                     ok(trav["refused"] == trav["ids_tried"] and not trav["stored"])])
    for name, f in sorted(data.items()):
        if name.startswith("temporary files: "):
            made = f["made"]
            rows.append([f"temporary files made during `{name.split(': ', 1)[1]}`",
                         f"{len(made)}" + (f" ({', '.join(sorted(set(made)))})" if made else ""), ok(not made)])
    return [*out, *table(["input", "answer", "meets the bar"], rows), "",
            "After each test: the kiosk answers /healthz, its state folder is empty, and every temporary file the "
            "process made is counted (anonymous ones too, which no folder listing shows).", ""]


def privacy_section(data: dict[str, Any]) -> list[str]:
    out = ["## Privacy (`-m slow`, tests/reliability/test_privacy.py)", ""]
    s = data.get("full class with phone photos")
    if s is None:
        return [*out, MISSING, ""]
    uploads = ", ".join(f"{u['bytes'] / 1e6:.1f} MB -> {u['status']}" for u in s["uploads"])
    folders: dict[str, int] = {}
    for path, count in s.get("other_processes_folders", {}).items():   # top-level folders only
        top = "/".join(path.split("/")[:2])
        folders[top] = folders.get(top, 0) + count
    others = ", ".join(f"{k}: {v}" for k, v in sorted(folders.items()))
    rows = [["phone-sized uploads (4032x3024 JPEG)", uploads, ""],
            ["files changed on disk during the run (`find / -xdev -newer marker`, test folders excluded)",
             s["files_changed_on_disk"], ""],
            ["... of them written by the kiosk (strace of its file-writing calls)" if s["strace"] else
             "... of them written by the kiosk (strace not installed: not traced)", len(s["written_by_kiosk"]),
             ok(not s["written_by_kiosk"])],
            ["kiosk's file-writing calls outside /dev and the spool's folder",
             "; ".join(shorten(p) for p in s["kiosk_write_calls_outside_pseudo_files"]) or "none",
             ok(not s["kiosk_write_calls_outside_pseudo_files"])],
            ["files changed by other processes, by folder", others, ""],
            ["changed files holding a token, password, student name or ID", len(s["secrets_in_changed_files"]),
             ok(not s["secrets_in_changed_files"])],
            ["tokens, passwords, names or IDs in the kiosk's output", f"{s['secrets_printed']} "
             f"(in {s['output_lines']} lines)", ok(not s["secrets_printed"])],
            ["temporary files / spool left", f"{s['kiosk_tmp_files']} / {s['spool_left']}",
             ok(not s["kiosk_tmp_files"] and not s["spool_left"])]]
    return out + table(["check", "figure", "meets the bar"], rows) + [""]


def shorten(path: str) -> str:
    """A traced path with the test's own folder replaced by ``TESTDIR`` (pytest's folder names change)."""
    return "`" + re.sub(r"/tmp/pytest-of-[^/]+/pytest-\d+/[^/]+", "TESTDIR", path) + "`"


def render(folder: Path) -> str:
    lines = ["# Reliability and security figures", "",
             "Written by `python -m tests.reliability.report` from the JSON the suites wrote "
             f"(`{os.environ.get('RELIABILITY_RESULTS') or '$RELIABILITY_RESULTS'}`); measured on {machine()}, "
             "a machine shared with other work, so times are indicative. Rerun the suites and this command to "
             "refresh it. A row marked **NO** misses the issue's bar today, and the test asserting it fails.", "",
             "```",
             ".venv/bin/python -m pytest -m slow tests/reliability/      # fault, bad input, privacy",
             ".venv/bin/python -m pytest -m load tests/reliability/      # LOAD_SECONDS, LOAD_RATE",
             "SOAK_SECONDS=600 .venv/bin/python -m pytest -m soak tests/reliability/   # SOAK_CLASS_SECONDS too",
             ".venv/bin/python -m tests.reliability.report",
             "```", ""]
    lines += fault_section(load(folder, "faults"))
    lines += soak_section(load(folder, "soak"))
    lines += load_section(load(folder, "load"))
    lines += bad_input_section(load(folder, "bad_input"))
    lines += privacy_section(load(folder, "privacy"))
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="folder of the suites' JSON (default: $RELIABILITY_RESULTS)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "reliability.md", help="Markdown file to write")
    args = parser.parse_args(argv)
    text = render(args.results or results_dir())
    args.out.write_text(text)
    print(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
