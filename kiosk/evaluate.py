"""``kiosk eval``: recognition accuracy on ORL people s21-s40 (never the calibration people s1-s20).

For k = 1 and 3 enrolment photos (shots 1..k of each person) and 4 folds, 15 people are enrolled and
5 are impostors, rotating so every person is an impostor once. The remaining shots (k+1..10) of all 20
people are the probes. Reported per stack, summed over the folds:

- ``rank1``: genuine probes whose best roster match is the right person (no threshold);
- ``false_accepts``: impostor probes marked as someone (confidence > 50 % and margin);
- ``false_rejects``: genuine probes not accepted, or accepted as the wrong person
  (``misidentified`` counts the latter alone);
- the same for voted *tracks*: 5 probe photos of one person in a row (cyclic windows over the
  probes, one track starting at each) through the kiosk's policy
  (:meth:`~kiosk.tracker.Decider.from_settings`, the track ending after its 5 frames), with the
  quality gate before embedding as in the pipeline. A track counts as accepted when it is
  ``"recognised"``.

``--json`` prints one JSON object on the last line (see :func:`report`); ``--baseline`` adds the dlib
stack, and says at once how to install it when it is missing.

Example::

    kiosk eval              # a table for the kiosk's stack
    kiosk eval --json --baseline
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from kiosk.model.calibrate import ORL_PAD, Stack, open_stack
from kiosk.model.match import Calibration, Gallery, best_match, decide
from kiosk.tracker import STRONG_CONFIDENCE, Decider, IoUTracker

EVAL_PEOPLE = tuple(f"s{i}" for i in range(21, 41))
FOLDS = 4
TRACK_FRAMES = 5


@dataclass(frozen=True)
class Probe:
    """One ORL photo through the stack: its vector (None: no face found) and whether it passed the gate."""

    vector: np.ndarray | None
    quality_ok: bool


@dataclass
class Tally:
    """Counts of one run; rates are derived in :meth:`summary`."""

    genuine: int = 0
    impostor: int = 0
    rank1: int = 0
    false_accepts: int = 0
    false_rejects: int = 0
    misidentified: int = 0

    def add(self, truth: str | None, accepted: str | None, top1: str | None) -> None:
        """One probe (or track): ``truth`` None for an impostor; ``accepted`` the marked student or None."""
        if truth is None:
            self.impostor += 1
            self.false_accepts += accepted is not None
            return
        self.genuine += 1
        self.rank1 += top1 == truth
        self.false_rejects += accepted != truth
        self.misidentified += accepted is not None and accepted != truth

    def summary(self) -> dict:
        """Counts plus rates (fractions 0..1; None when there was nothing to count)."""
        def rate(n: int, d: int) -> float | None:
            return round(n / d, 4) if d else None

        return {**asdict(self), "rank1_rate": rate(self.rank1, self.genuine),
                "false_accept_rate": rate(self.false_accepts, self.impostor),
                "false_reject_rate": rate(self.false_rejects, self.genuine)}


def analyse_people(stack: Stack, faces: dict[str, list[np.ndarray]], people: Sequence[str], settings) -> dict:
    """Person -> a :class:`Probe` per photo (padded ORL photo, best face, aligned, gated, embedded)."""
    from kiosk.datasets import orl_padded_rgb
    from kiosk.model.quality import assess

    out: dict[str, list[Probe]] = {}
    for person in people:
        out[person] = []
        for img in faces[person]:
            frame = orl_padded_rgb(img, ORL_PAD)
            found = stack.detector.detect(frame)
            if not found:
                out[person].append(Probe(None, False))
                continue
            q = assess(frame, found[0], min_face_px=settings.min_face_px, min_sharpness=settings.min_sharpness,
                       max_yaw=settings.max_yaw)
            vector = stack.embedder.embed([stack.embedder.align(frame, found[0])])[0]
            out[person].append(Probe(vector, q.ok))
    return out


def _folds(people: Sequence[str]) -> list[tuple[list[str], list[str]]]:
    """(enrolled, impostors) per fold: each consecutive fifth of the people is the impostor group once."""
    size = len(people) // FOLDS
    return [([p for p in people if p not in people[f * size:(f + 1) * size]], list(people[f * size:(f + 1) * size]))
            for f in range(FOLDS)]


def _gallery(probes: dict[str, list[Probe]], enrolled: list[str], k: int) -> Gallery:
    vecs = {p: np.array([pr.vector for pr in probes[p][:k] if pr.vector is not None]) for p in enrolled}
    return Gallery.from_vectors({p: v for p, v in vecs.items() if len(v)})


def _vote_track(frames: list[Probe], gallery: Gallery, decider: Decider) -> str | None:
    """The student a 5-frame track is recognised as, or None (unknown / undecided)."""
    track = IoUTracker(clock=lambda: 0.0).update([(0, 0, 1, 1)], now=0.0).started[0]
    for probe in frames:
        if probe.vector is not None and probe.quality_ok and decider.wants(track):
            decider.observe(track, best_match(probe.vector, gallery), now=0.0)
    decider.end(track, now=0.0)
    return track.user_id if track.state == "recognised" else None


def evaluate_k(probes: dict[str, list[Probe]], k: int, calibration: Calibration, settings) -> dict:
    """Single-photo and voted-track tallies for ``k`` enrolment photos, summed over the folds."""
    single, voted = Tally(), Tally()
    decider = Decider.from_settings(settings, calibration, clock=lambda: 0.0)
    for enrolled, impostors in _folds(list(probes)):
        gallery = _gallery(probes, enrolled, k)
        for person in [*enrolled, *impostors]:
            truth = person if person in enrolled else None
            rest = probes[person][k:]
            for probe in rest:
                match = best_match(probe.vector, gallery) if probe.vector is not None else None
                single.add(truth, decide(match, calibration, settings.min_margin)[0], match and match.user_id)
            for start in range(len(rest)):
                window = [rest[(start + i) % len(rest)] for i in range(TRACK_FRAMES)]
                accepted = _vote_track(window, gallery, decider)
                voted.add(truth, accepted, accepted)
    voted_summary = voted.summary()
    voted_summary.pop("rank1_rate"), voted_summary.pop("rank1")  # a track has no rank-1 of its own
    return {"k": k, "single": single.summary(), "voted": voted_summary}


def evaluate(settings, choice: str = "mobilefacenet", ks: Sequence[int] = (1, 3)) -> dict:
    """The whole evaluation of one stack on ORL s21-s40 (see the module docstring)."""
    from kiosk.datasets import orl_faces

    faces = orl_faces(settings)
    with open_stack(settings, choice) as stack:
        probes = analyse_people(stack, faces, EVAL_PEOPLE, settings)
        method = stack.embedder.method
    calibration = Calibration.load(method)
    return {
        "stack": choice, "method": method,
        "photos": sum(len(v) for v in probes.values()),
        "no_face": sum(p.vector is None for v in probes.values() for p in v),
        "gated": sum(p.vector is not None and not p.quality_ok for v in probes.values() for p in v),
        "results": [evaluate_k(probes, k, calibration, settings) for k in ks],
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_report(run: dict) -> str:
    """A plain-text table of one stack's run."""
    lines = [f"{run['stack']} ({run['method']}): {run['photos']} photos, {run['no_face']} without a face, "
             f"{run['gated']} failed the quality gate",
             "  k  mode    genuine impostor  rank-1   false accepts    false rejects   misidentified"]
    for res in run["results"]:
        for mode in ("single", "voted"):
            t = res[mode]
            lines.append(f"  {res['k']}  {mode:<6} {t['genuine']:>8} {t['impostor']:>8}  "
                         f"{_pct(t.get('rank1_rate')):>6}   {t['false_accepts']:>4} ({_pct(t['false_accept_rate']):>6})"
                         f"   {t['false_rejects']:>4} ({_pct(t['false_reject_rate']):>6})   {t['misidentified']:>4}")
    return "\n".join(lines)


def format_side_by_side(rows: Sequence[dict]) -> str:
    """One line per k with every stack's rank-1, false accepts and false rejects (single / voted)."""
    stacks = list(dict.fromkeys(r["embedder"] for r in rows))
    head = "".join(f" | {name:^38}" for name in stacks)
    lines = ["side by side: rank-1, false accepts single/voted, false rejects single/voted", f"  k{head}"]
    for k in dict.fromkeys(r["k"] for r in rows):
        cells = []
        for name in stacks:
            r = next(x for x in rows if x["embedder"] == name and x["k"] == k)
            cells.append(f" | {_pct(r['rank1']):>6}  FA {_pct(r['far_single']):>5}/{_pct(r['far_track']):<5}"
                         f"  FR {_pct(r['frr_single']):>5}/{_pct(r['frr_track']):<5}")
        lines.append(f"  {k}" + "".join(cells))
    return "\n".join(lines)


def configure_parser(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one machine-readable JSON object")
    parser.add_argument("--baseline", action="store_true", help="also run the dlib baseline (optional extra)")
    parser.add_argument("--k", type=int, action="append", choices=range(1, 10), metavar="K",
                        help="enrolment photos per person (repeatable; default 1 and 3)")


def result_rows(runs: Sequence[dict]) -> list[dict]:
    """One flat row per stack and k: ``embedder`` (the stack's name), ``method``, ``k``, and the
    rates as fractions 0..1 (None when nothing was counted): ``rank1``, ``far_single``,
    ``frr_single``, ``far_track``, ``frr_track``."""
    rows = []
    for run in runs:
        for res in run["results"]:
            single, voted = res["single"], res["voted"]
            rows.append({"embedder": run["stack"], "method": run["method"], "k": res["k"],
                         "rank1": single["rank1_rate"], "far_single": single["false_accept_rate"],
                         "frr_single": single["false_reject_rate"], "far_track": voted["false_accept_rate"],
                         "frr_track": voted["false_reject_rate"], "impostor_tracks": voted["impostor"],
                         "false_accept_tracks": voted["false_accepts"], "genuine_tracks": voted["genuine"]})
    return rows


def report(settings, ks: Sequence[int] = (1, 3), baseline: bool = False) -> dict:
    """The JSON-ready report of ``kiosk eval``: ``dataset``, ``results`` (see :func:`result_rows`),
    the decision settings used, and ``runs`` (every count per stack). Raises BaselineUnavailable
    before any work when ``baseline`` is asked for but the extra is not installed."""
    from kiosk.model.baseline import require

    if baseline:
        require()
    runs = [evaluate(settings, "mobilefacenet", ks)]
    if baseline:
        runs.append(evaluate(settings, "dlib", ks))
    return {"dataset": "ORL s21-s40", "results": result_rows(runs), "folds": FOLDS, "track_frames": TRACK_FRAMES,
            "min_margin": settings.min_margin, "votes_needed": settings.votes_needed,
            "strong_confidence": STRONG_CONFIDENCE, "runs": runs}


def run_command(args, settings) -> int:
    """Prints the tables, or with ``--json`` one JSON object on one line (the last line of stdout)."""
    from kiosk.model.baseline import missing_note

    result = report(settings, tuple(args.k or (1, 3)), args.baseline)
    if args.json:
        print(json.dumps(result, separators=(",", ":")))
        return 0
    print("\n\n".join(format_report(run) for run in result["runs"]))
    if len(result["runs"]) > 1:
        print("\n" + format_side_by_side(result["results"]))
    if not args.baseline:
        print(f"\ndlib baseline: {missing_note() or 'installed, not run (add --baseline)'}")
    return 0
