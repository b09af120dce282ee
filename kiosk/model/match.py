"""Matching a face vector against the running class's roster, and the calibrated confidence %.

Pure numpy; no I/O except :meth:`Calibration.load`. All vectors are L2-normalised, so cosine
similarity is a dot product in [-1, 1].

- :class:`Gallery` holds the enrolled vectors of the running class's roster only (several per student).
- :func:`best_match` scores every student as the maximum similarity over their vectors and returns
  the best student, the best *other* student's score and the margin between them.
- :class:`Calibration` maps similarity to a confidence %, fitted by ``kiosk calibrate`` on measured
  genuine/impostor distributions (ORL people s1-s20): 50 % sits where the measured false-accept rate
  per comparison is :attr:`Calibration.far_at_50` (0.1 %), and every higher % means a lower FAR.
- :func:`decide` accepts a match only above 50 % and with enough margin over the runner-up.

Example::

    gallery = Gallery.from_vectors({"00012345": vecs_a, "00012346": vecs_b})
    calibration = Calibration.load("mobilefacenet-v1")
    user_id, confidence = decide(best_match(probe, gallery), calibration, min_margin=0.05)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from kiosk.errors import ModelLoadError

CALIBRATION_PATH = Path(__file__).with_name("calibration.json")
ACCEPT_ABOVE = 50  # a match is acted on only when its confidence is strictly above this %


@dataclasses.dataclass(frozen=True)
class Gallery:
    """Enrolled vectors of one roster: ``vectors`` (n, dim) unit rows, ``owners[i]`` indexes ``user_ids``."""

    user_ids: tuple[str, ...]
    vectors: np.ndarray
    owners: np.ndarray

    @classmethod
    def from_vectors(cls, by_user: Mapping[str, np.ndarray], dim: int | None = None) -> Gallery:
        """From ``{user_id: (k, dim) vectors}``; students with no vectors are left out.

        Rows are re-normalised. ``dim`` is the vector length of an empty gallery (None: 0).
        """
        ids, blocks, owners = [], [], []
        for user_id, vecs in by_user.items():
            array = np.atleast_2d(np.asarray(vecs, dtype=np.float32))
            if array.size == 0:
                continue
            owners.append(np.full(array.shape[0], len(ids), dtype=np.int32))
            ids.append(user_id)
            blocks.append(array)
        if not blocks:
            return cls((), np.zeros((0, dim or 0), np.float32), np.zeros(0, np.int32))
        if len({b.shape[1] for b in blocks}) != 1:
            raise ValueError("All vectors in a gallery must have the same dimension.")
        matrix = np.concatenate(blocks)
        matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        return cls(tuple(ids), matrix, np.concatenate(owners))

    def __len__(self) -> int:
        return len(self.user_ids)

    def scores(self, probe: np.ndarray) -> np.ndarray:
        """Per-student similarity (max over their vectors), shape ``(len(self),)``; probe is a unit vector."""
        sims = self.vectors @ np.asarray(probe, dtype=np.float32)
        best = np.full(len(self.user_ids), -1.0, dtype=np.float32)
        np.maximum.at(best, self.owners, sims)
        return best


@dataclasses.dataclass(frozen=True)
class Match:
    """The best roster student for one face.

    ``second_similarity`` is the best score of any *other* student (-1.0 when the roster has one
    student), and ``margin = similarity - second_similarity``.
    """

    user_id: str
    similarity: float
    second_similarity: float
    margin: float


def best_match(probe: np.ndarray, gallery: Gallery) -> Match | None:
    """The top-1 student for ``probe`` (a unit vector); None when the gallery is empty."""
    if len(gallery) == 0:
        return None
    scores = gallery.scores(probe)
    order = np.argsort(-scores, kind="stable")
    top = float(scores[order[0]])
    second = float(scores[order[1]]) if len(order) > 1 else -1.0
    return Match(gallery.user_ids[order[0]], top, second, top - second)


@dataclasses.dataclass(frozen=True)
class CalibrationRow:
    """One knot of the mapping: at ``similarity`` the confidence is ``confidence`` %. ``far_target`` is
    the false-accept rate the knot was placed at; ``far`` (impostor comparisons at or above it) and
    ``frr`` (genuine comparisons below it) were measured on the calibration set. A ``far`` of 0.0
    with a ``far_target`` below 1/``impostor`` means "none seen": the knot is extrapolated."""

    similarity: float
    confidence: int
    far: float
    frr: float
    far_target: float


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Similarity -> confidence %: piecewise-linear through ``knots`` (similarity, %), monotonic.

    ``far_at_50`` is the per-comparison false-accept rate the 50 % point was placed at; ``table``
    holds the measured FAR/FRR at each knot; ``genuine`` / ``impostor`` count the comparisons.
    """

    method: str
    knots: tuple[tuple[float, float], ...]
    far_at_50: float
    table: tuple[CalibrationRow, ...] = ()
    genuine: int = 0
    impostor: int = 0
    source: str = ""

    def __post_init__(self) -> None:
        sims = np.array([k[0] for k in self.knots], dtype=float)
        confs = np.array([k[1] for k in self.knots], dtype=float)
        if len(self.knots) < 2 or np.any(np.diff(sims) <= 0):
            raise ValueError("Calibration knots must have strictly increasing similarities.")
        if np.any(np.diff(confs) < 0) or confs[0] < 0 or confs[-1] > 100:
            raise ValueError("Calibration confidences must rise from 0 to at most 100.")

    def confidence(self, similarity: float) -> int:
        """Confidence % (0..100) for a cosine similarity; 0 below the first knot, flat above the last."""
        sims = np.array([k[0] for k in self.knots])
        confs = np.array([k[1] for k in self.knots])
        value = float(np.interp(similarity, sims, confs, left=0.0, right=confs[-1]))
        return int(np.clip(np.floor(value + 0.5), 0, 100))

    def similarity_at(self, confidence: float) -> float:
        """The similarity where the mapping reaches ``confidence`` % (inverse of :meth:`confidence`)."""
        sims = np.array([k[0] for k in self.knots])
        confs = np.array([k[1] for k in self.knots])
        return float(np.interp(confidence, confs, sims))

    def to_dict(self) -> dict:
        """A JSON-ready dict (the per-method entry of calibration.json)."""
        out = dataclasses.asdict(self)
        out["knots"] = [list(k) for k in self.knots]
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> Calibration:
        """From :meth:`to_dict`'s output; raises ValueError/KeyError/TypeError when malformed."""
        rows = tuple(CalibrationRow(**row) for row in data.get("table", ()))
        return cls(
            method=str(data["method"]),
            knots=tuple((float(s), float(c)) for s, c in data["knots"]),
            far_at_50=float(data["far_at_50"]),
            table=rows,
            genuine=int(data.get("genuine", 0)),
            impostor=int(data.get("impostor", 0)),
            source=str(data.get("source", "")),
        )

    @classmethod
    def load(cls, method: str, path: str | Path | None = None) -> Calibration:
        """The calibration of ``method`` from calibration.json (``path`` None: the committed file)."""
        path = Path(path) if path is not None else CALIBRATION_PATH
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entry = data["methods"][method]
        except OSError as exc:
            raise ModelLoadError(f"Cannot read the calibration file {path}: run `kiosk calibrate`.") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"The calibration file {path} has no valid entry for {method}.") from exc
        try:
            return cls.from_dict(entry)
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"The calibration for {method} in {path} is malformed: {exc}") from exc


def decide(match: Match | None, calibration: Calibration, min_margin: float) -> tuple[str | None, int]:
    """``(user_id, confidence %)`` when the match is above 50 % and ahead of the runner-up by at least
    ``min_margin`` (cosine); otherwise ``(None, confidence %)`` (0 when there is no match)."""
    if match is None:
        return None, 0
    confidence = calibration.confidence(match.similarity)
    if confidence > ACCEPT_ABOVE and match.margin >= min_margin:
        return match.user_id, confidence
    return None, confidence
