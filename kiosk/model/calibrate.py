"""``kiosk calibrate``: fit the similarity -> confidence % mapping from measured ORL distributions.

Calibration set: ORL people s1-s20 only (``kiosk eval`` uses s21-s40, never these). Each photo is
padded 50 px (edge replicate), run through the real detector (best face), aligned and embedded.
Every pair of photos is one comparison: same person = genuine, different people = impostor.

The mapping: let FAR(s) be the share of impostor comparisons with similarity >= s. Then

    confidence(s) = 50 + (50 / 3) * log10(0.001 / FAR(s))        clipped to 0..100

so 50 % is FAR 0.1 % per comparison, each further 16.7 points is ten times fewer false accepts
(66.7 % = FAR 1e-4, 83.3 % = 1e-5, 100 % = 1e-6) and 0 % is FAR 100 %. The knots at FAR 1 .. 1e-3
are measured quantiles of the impostor scores; the knots at 1e-4 .. 1e-6 lie beyond what ~18,000
impostor comparisons can measure and are extrapolated by a normal tail fitted through the measured
1e-2 and 1e-3 quantiles. Between knots the mapping is linear in similarity.

Why 0.1 %: a class of 30 enrolled students gives one impostor frame a ~3 % chance of some student
above 50 %; a track needs ``votes_needed`` agreeing frames for the same student, so an impostor is
marked far less often (``kiosk eval`` measures it), while genuine students are still accepted.

Example::

    kiosk calibrate                       # writes kiosk/model/calibration.json
    kiosk calibrate --out /tmp/cal.json --baseline
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from kiosk.model.match import CALIBRATION_PATH, Calibration, CalibrationRow

CALIBRATION_PEOPLE = tuple(f"s{i}" for i in range(1, 21))
FAR_AT_50 = 1e-3
POINTS_PER_DECADE = 50 / 3
MEASURED_FARS = (1.0, 1e-1, 1e-2, 1e-3)
EXTRAPOLATED_FARS = (1e-4, 1e-5, 1e-6)
ORL_PAD = 50


# --- the face stack: detector + embedder --------------------------------------------------------
@dataclass
class Stack:
    """A detector and an embedder that belong together (``name`` for reports: "mobilefacenet", "dlib")."""

    name: str
    detector: Any
    embedder: Any

    def close(self) -> None:
        """Closes both; safe to call twice."""
        for part in (self.detector, self.embedder):
            part.close()

    def embed_best_face(self, frame_rgb: np.ndarray) -> np.ndarray | None:
        """The unit vector of the highest-scoring face in the frame; None when no face is found."""
        faces = self.detector.detect(frame_rgb)
        if not faces:
            return None
        return self.embedder.embed([self.embedder.align(frame_rgb, faces[0])])[0]


@contextlib.contextmanager
def open_stack(settings, choice: str = "mobilefacenet", *, as_configured: bool = False) -> Iterator[Stack]:
    """The kiosk's engine (``"mobilefacenet"``: BlazeFace + MobileFaceNet, built by ``Engine.from_settings``;
    on the whole frame without ROI or tiles unless ``as_configured``, which keeps the detection settings
    the kiosk runs with) or the dlib baseline (``"dlib"``: HOG + ResNet; raises BaselineUnavailable
    without the extra). Closed on exit."""
    if choice == "dlib":
        from kiosk.model.baseline import DlibDetector, DlibEmbedder

        stack = Stack("dlib", DlibDetector(), DlibEmbedder())
    else:
        from kiosk.model.engine import Engine

        plain = {} if as_configured else {"detect_roi": "", "detect_tiles": 1}
        engine = Engine.from_settings(settings.replace(embedder="mobilefacenet", **plain))
        stack = Stack("mobilefacenet", engine.detector, engine.embedder)
    try:
        yield stack
    finally:
        stack.close()


def embed_people(stack: Stack, faces: dict[str, list[np.ndarray]], people) -> dict[str, list[np.ndarray | None]]:
    """Each ORL photo of ``people`` padded, detected and embedded; None where no face was found."""
    from kiosk.datasets import orl_padded_rgb

    return {p: [stack.embed_best_face(orl_padded_rgb(img, ORL_PAD)) for img in faces[p]] for p in people}


# --- scores and the fit (pure) ------------------------------------------------------------------
def pair_scores(embeddings: dict[str, list[np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) cosine similarities over every unordered pair of embedded photos."""
    labels, vectors = [], []
    for person, vecs in embeddings.items():
        for v in vecs:
            if v is not None:
                labels.append(person)
                vectors.append(v)
    matrix = np.asarray(vectors, dtype=np.float64)
    sims = matrix @ matrix.T
    upper = np.triu_indices(len(labels), k=1)
    same = np.asarray(labels)[upper[0]] == np.asarray(labels)[upper[1]]
    return sims[upper][same], sims[upper][~same]


def measured_far(impostor: np.ndarray, similarity: float) -> float:
    """Share of impostor comparisons at or above ``similarity``."""
    return float(np.mean(impostor >= similarity)) if len(impostor) else 0.0


def measured_frr(genuine: np.ndarray, similarity: float) -> float:
    """Share of genuine comparisons below ``similarity``."""
    return float(np.mean(genuine < similarity)) if len(genuine) else 0.0


def confidence_for_far(far: float, far_at_50: float = FAR_AT_50) -> float:
    """The confidence % the mapping gives to a false-accept rate (clipped to 0..100)."""
    return float(np.clip(50 + POINTS_PER_DECADE * math.log10(far_at_50 / far), 0, 100))


def _knot_similarities(impostor: np.ndarray) -> list[tuple[float, float]]:
    """(target FAR, similarity) for every knot: measured quantiles, then the fitted normal tail."""
    points = [(1.0, float(impostor.min()))]
    points += [(far, float(np.quantile(impostor, 1 - far))) for far in MEASURED_FARS[1:]]
    s2, s3 = points[2][1], points[3][1]
    z2, z3 = NormalDist().inv_cdf(1 - 1e-2), NormalDist().inv_cdf(1 - 1e-3)
    sd = max((s3 - s2) / (z3 - z2), 1e-4)
    mu = s2 - z2 * sd
    points += [(far, mu + NormalDist().inv_cdf(1 - far) * sd) for far in EXTRAPOLATED_FARS]
    fixed, last = [], -math.inf
    for far, sim in points:  # strictly increasing similarities even on tiny or tied samples
        sim = max(sim, last + 1e-4)
        fixed.append((far, sim))
        last = sim
    return fixed


def fit_calibration(genuine: np.ndarray, impostor: np.ndarray, method: str, source: str = "") -> Calibration:
    """The calibration for ``method`` from genuine and impostor similarity samples (see module docstring)."""
    genuine, impostor = np.asarray(genuine, float), np.asarray(impostor, float)
    if len(genuine) < 10 or len(impostor) < 1000:
        raise ValueError("Calibration needs at least 10 genuine and 1000 impostor comparisons.")
    knots, rows = [], []
    for far, sim in _knot_similarities(impostor):
        conf = confidence_for_far(far)
        knots.append((round(sim, 5), round(conf, 3)))
        rows.append(CalibrationRow(round(sim, 5), round(conf), measured_far(impostor, sim),
                                   measured_frr(genuine, sim), far))
    return Calibration(method=method, knots=tuple(knots), far_at_50=FAR_AT_50, table=tuple(rows),
                       genuine=len(genuine), impostor=len(impostor), source=source)


# --- the command ----------------------------------------------------------------------------------
def calibrate(settings, choice: str, faces: dict[str, list[np.ndarray]]) -> tuple[Calibration, int]:
    """Fits the calibration of one stack on ORL s1-s20; returns it and the number of photos without a face."""
    with open_stack(settings, choice) as stack:
        embeddings = embed_people(stack, faces, CALIBRATION_PEOPLE)
        method = stack.embedder.method
    misses = sum(v is None for vecs in embeddings.values() for v in vecs)
    genuine, impostor = pair_scores(embeddings)
    source = (f"kiosk calibrate: ORL s1-s20, {sum(len(v) for v in embeddings.values()) - misses} photos "
              f"padded {ORL_PAD} px, detector {stack.name if choice == 'dlib' else settings.detector}")
    return fit_calibration(genuine, impostor, method, source), misses


def format_table(cal: Calibration) -> str:
    """The calibration as a Markdown table (similarity, confidence, target and measured FAR, FRR)."""
    lines = [f"{cal.method}: {cal.genuine} genuine, {cal.impostor} impostor comparisons",
             "| similarity | confidence % | FAR target | FAR measured | FRR measured |",
             "|---:|---:|---:|---:|---:|"]
    for row in cal.table:
        lines.append(f"| {row.similarity:.3f} | {row.confidence} | {row.far_target:.0e} | {row.far:.5f} | "
                     f"{row.frr:.3f} |")
    return "\n".join(lines)


def configure_parser(parser) -> None:
    parser.add_argument("--out", metavar="PATH", default=str(CALIBRATION_PATH),
                        help=f"where to write the calibration JSON (default {CALIBRATION_PATH})")
    parser.add_argument("--baseline", action="store_true",
                        help="also calibrate the dlib baseline (needs the optional extra)")


def run_command(args, settings) -> int:
    from kiosk.datasets import orl_faces

    faces = orl_faces(settings)
    out = Path(args.out)
    methods: dict[str, Any] = {}
    if out.is_file():  # keep other methods' entries (e.g. dlib's when only ours is refitted)
        with contextlib.suppress(ValueError, OSError):
            methods = dict(json.loads(out.read_text(encoding="utf-8")).get("methods", {}))
    for choice in ("mobilefacenet", "dlib") if args.baseline else ("mobilefacenet",):
        cal, misses = calibrate(settings, choice, faces)
        methods[cal.method] = cal.to_dict()
        print(format_table(cal))
        photos = sum(len(faces[p]) for p in CALIBRATION_PEOPLE)
        print(f"{misses} of {photos} photos had no detected face.\n")
    data = {"format": 1, "far_at_50": FAR_AT_50, "methods": methods}
    out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"Wrote {out}.")
    return 0
