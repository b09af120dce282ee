"""`kiosk eval`: its counting on synthetic vectors, the real run on ORL s21-s40, and the dlib baseline."""

import importlib
import json

import numpy as np
import pytest

from kiosk import cli
from kiosk.errors import BaselineUnavailable
from kiosk.evaluate import EVAL_PEOPLE, Probe, Tally, _folds, evaluate_k
from kiosk.model import baseline
from kiosk.model.match import Calibration

CAL = Calibration(method="test", knots=((0.2, 0.0), (0.5, 50.0), (0.8, 100.0)), far_at_50=0.001)


def test_tally_counts_accepts_rejects_and_misidentifications():
    t = Tally()
    t.add("a", "a", "a")      # right
    t.add("a", None, "a")     # rejected, but rank-1 right
    t.add("a", "b", "b")      # wrong person: a reject and a misidentification
    t.add(None, "c", "c")     # impostor accepted
    t.add(None, None, "c")    # impostor refused
    s = t.summary()
    assert (s["genuine"], s["impostor"], s["rank1"]) == (3, 2, 2)
    assert (s["false_accepts"], s["false_rejects"], s["misidentified"]) == (1, 2, 1)
    assert s["false_accept_rate"] == 0.5 and s["rank1_rate"] == pytest.approx(0.6667)
    assert Tally().summary()["false_reject_rate"] is None


def test_folds_make_every_person_an_impostor_exactly_once():
    folds = _folds(list(EVAL_PEOPLE))
    assert len(folds) == 4
    impostors = [p for _, imp in folds for p in imp]
    assert sorted(impostors) == sorted(EVAL_PEOPLE)
    for enrolled, imp in folds:
        assert len(enrolled) == 15 and len(imp) == 5 and not set(enrolled) & set(imp)


class FakeSettings:
    min_margin = 0.05
    votes_needed = 3
    max_track_embeddings = 8


def synthetic_probes(noise, seed=0):
    """20 people, 10 photos each: a person's own direction plus noise (0 = identical photos)."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(64, 20)))[0].T  # orthonormal identities
    probes = {}
    for i, person in enumerate(EVAL_PEOPLE):
        vecs = centres[i] + noise * rng.normal(size=(10, 64))
        probes[person] = [Probe(v / np.linalg.norm(v), True) for v in vecs]
    return probes


def test_separable_people_are_all_recognised_and_impostors_never_accepted():
    result = evaluate_k(synthetic_probes(0.05), 3, CAL, FakeSettings)
    single, voted = result["single"], result["voted"]
    assert (single["genuine"], single["impostor"]) == (4 * 15 * 7, 4 * 5 * 7)
    assert single["rank1_rate"] == 1.0 and single["false_accepts"] == 0 and single["false_rejects"] == 0
    assert voted["false_accepts"] == 0 and voted["false_rejects"] == 0


def test_missing_faces_and_gated_frames_count_as_rejects_not_crashes():
    probes = synthetic_probes(0.05)
    probes["s21"] = [Probe(None, False)] * 10  # never detected: not enrolled, every probe rejected
    probes["s22"] = [probes["s22"][0]] + [Probe(p.vector, False) for p in probes["s22"][1:]]  # all gated
    result = evaluate_k(probes, 1, CAL, FakeSettings)
    assert result["single"]["false_rejects"] == 9 * 3  # s21 in the 3 folds where it is enrolled
    assert result["voted"]["false_rejects"] == 9 * 3 * 2  # s21 and s22: no track has a usable frame


def test_voting_removes_single_frame_false_accepts_of_a_lookalike():
    probes = synthetic_probes(0.05)
    # one photo of s40 (an impostor in the last fold) looks like s21
    probes["s40"][5] = probes["s21"][9]
    result = evaluate_k(probes, 1, CAL, FakeSettings)
    assert result["single"]["false_accepts"] == 1
    assert result["voted"]["false_accepts"] == 0


@pytest.mark.slow
def test_kiosk_eval_json_on_orl_meets_the_measured_floors(capsys, orl, models_dir, monkeypatch):
    monkeypatch.delenv("KIOSK_CONFIG", raising=False)
    assert cli.main(["eval", "--json", "--k", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    run = report["runs"][0]
    assert run["method"] == "mobilefacenet-v1" and run["photos"] == 200
    (res,) = run["results"]
    # measured: rank-1 100 %, 0 false accepts single and voted, false rejects 0.6 % single, 1.1 % voted
    assert res["single"]["rank1_rate"] >= 0.95
    assert res["single"]["false_accept_rate"] <= 0.02
    assert res["voted"]["false_accepts"] == 0
    assert res["voted"]["false_reject_rate"] <= 0.05


def test_baseline_without_dlib_says_how_to_install(monkeypatch):
    real = importlib.import_module

    def no_dlib(name, *args):
        if name == "dlib":
            raise ImportError("No module named 'dlib'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_dlib)
    with pytest.raises(BaselineUnavailable, match="pip install"):
        baseline.DlibEmbedder()


@pytest.mark.slow
@pytest.mark.skipif(not baseline.available(), reason="the optional dlib baseline is not installed")
def test_dlib_baseline_follows_the_protocols_and_tells_people_apart(orl):
    from kiosk.datasets import orl_padded_rgb
    from kiosk.model.types import Detector, Embedder

    detector, embedder = baseline.DlibDetector(), baseline.DlibEmbedder()
    assert isinstance(detector, Detector) and isinstance(embedder, Embedder)
    assert (embedder.method, embedder.dim) == ("dlib-resnet-v1", 128)
    vectors = []
    for img in (orl["s1"][0], orl["s1"][1], orl["s2"][0]):
        frame = orl_padded_rgb(img)
        (face,) = detector.detect(frame)
        assert face.keypoints.shape == (6, 2) and 0 < face.score < 1
        assert face.keypoints[0, 0] < face.keypoints[1, 0]  # subject's right eye on the image's left
        vectors.append(embedder.embed([embedder.align(frame, face)])[0])
    v = np.array(vectors)
    assert v.shape == (3, 128) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]
    assert embedder.embed([]).shape == (0, 128)
