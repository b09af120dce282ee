"""The committed calibration means what the docs say, and the fit that produces it behaves."""

import json

import numpy as np
import pytest

from kiosk.model.calibrate import (
    FAR_AT_50,
    confidence_for_far,
    fit_calibration,
    format_table,
    pair_scores,
)
from kiosk.model.match import CALIBRATION_PATH, Calibration

METHODS = ("mobilefacenet-v1", "dlib-resnet-v1")


@pytest.fixture(scope="module")
def committed():
    return json.loads(CALIBRATION_PATH.read_text())


@pytest.mark.parametrize("method", METHODS)
def test_committed_calibration_is_monotonic_and_spans_0_to_100(method):
    cal = Calibration.load(method)
    sims = np.linspace(-1, 1, 2001)
    confs = np.array([cal.confidence(s) for s in sims])
    assert np.all(np.diff(confs) >= 0)
    assert confs[0] == 0 and confs[-1] == 100


@pytest.mark.parametrize("method", METHODS)
def test_committed_50_percent_sits_at_the_stated_far(method, committed):
    cal = Calibration.load(method)
    assert committed["far_at_50"] == cal.far_at_50 == FAR_AT_50 == 0.001
    row = next(r for r in cal.table if r.confidence == 50)
    assert row.far_target == 0.001
    # measured on ~19,000 impostor comparisons: 0.1 % is ~19 of them
    assert row.far == pytest.approx(0.001, abs=0.0002)
    assert cal.confidence(row.similarity - 0.005) <= 50 < cal.confidence(row.similarity + 0.005)
    assert cal.genuine >= 800 and cal.impostor >= 15000


@pytest.mark.parametrize("method", METHODS)
def test_committed_higher_confidence_means_lower_far_and_higher_frr(method):
    cal = Calibration.load(method)
    fars = [r.far for r in cal.table]
    frrs = [r.frr for r in cal.table]
    assert fars == sorted(fars, reverse=True)
    assert frrs == sorted(frrs)
    assert [r.far_target for r in cal.table] == [1.0, 0.1, 0.01, 0.001, 1e-4, 1e-5, 1e-6]


def test_mobilefacenet_accepts_most_genuine_comparisons_at_50_percent():
    row = next(r for r in Calibration.load("mobilefacenet-v1").table if r.confidence == 50)
    assert row.frr < 0.05  # measured 1.1 %


def test_confidence_for_far_is_16_7_points_per_decade():
    assert confidence_for_far(1e-3) == 50
    assert confidence_for_far(1e-4) == pytest.approx(66.667, abs=0.01)
    assert confidence_for_far(1.0) == 0
    assert confidence_for_far(1e-9) == 100


def synthetic(seed=0, n_imp=20000, n_gen=900):
    rng = np.random.default_rng(seed)
    return rng.normal(0.7, 0.08, n_gen), rng.normal(0.1, 0.12, n_imp)


def test_fit_places_50_percent_at_the_measured_0_1_percent_far():
    genuine, impostor = synthetic()
    cal = fit_calibration(genuine, impostor, "test")
    s50 = cal.similarity_at(50)
    assert np.mean(impostor >= s50) == pytest.approx(0.001, abs=0.0002)
    # the normal tail extrapolation is right for a normal impostor distribution
    s67 = cal.similarity_at(66.667)
    assert s67 == pytest.approx(0.1 + 0.12 * 3.719, abs=0.03)
    assert "| similarity |" in format_table(cal)


def test_fit_stays_monotonic_on_tied_scores_and_refuses_tiny_samples():
    cal = fit_calibration(np.full(50, 0.9), np.full(2000, 0.2), "test")
    sims = [k[0] for k in cal.knots]
    assert np.all(np.diff(sims) > 0)
    with pytest.raises(ValueError, match="at least"):
        fit_calibration(np.ones(5), np.zeros(5000), "test")


def test_pair_scores_split_genuine_and_impostor_pairs_and_skip_missing_faces():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    genuine, impostor = pair_scores({"p1": [a, a, None], "p2": [b]})
    assert sorted(genuine) == [1.0]
    assert sorted(impostor) == [0.0, 0.0]


def _rerun(tmp_path, monkeypatch, *extra):
    from kiosk import cli

    monkeypatch.delenv("KIOSK_CONFIG", raising=False)
    out = tmp_path / "calibration.json"
    assert cli.main(["calibrate", "--out", str(out), *extra]) == 0
    return json.loads(out.read_text())


def _same_calibration(new: dict, old: dict) -> None:
    assert (new["method"], new["genuine"], new["impostor"], new["far_at_50"]) == \
        (old["method"], old["genuine"], old["impostor"], old["far_at_50"])
    assert np.allclose(np.array(new["knots"]), np.array(old["knots"]), atol=2e-3)
    assert [r["confidence"] for r in new["table"]] == [r["confidence"] for r in old["table"]]
    assert np.allclose([r["far"] for r in new["table"]], [r["far"] for r in old["table"]], atol=2e-4)


@pytest.mark.slow
def test_rerunning_the_calibration_reproduces_the_committed_file(tmp_path, monkeypatch, orl, models_dir, committed):
    """`kiosk calibrate` on ORL s1-s20 gives the committed MobileFaceNet entry again (float noise aside)."""
    new = _rerun(tmp_path, monkeypatch)
    assert new["format"] == committed["format"] and new["far_at_50"] == committed["far_at_50"]
    _same_calibration(new["methods"]["mobilefacenet-v1"], committed["methods"]["mobilefacenet-v1"])


@pytest.mark.slow
@pytest.mark.skipif(not __import__("kiosk.model.baseline").model.baseline.available(),
                    reason="the optional dlib baseline is not installed")
def test_rerunning_the_baseline_calibration_reproduces_the_committed_file(tmp_path, monkeypatch, orl, committed):
    new = _rerun(tmp_path, monkeypatch, "--baseline")
    _same_calibration(new["methods"]["dlib-resnet-v1"], committed["methods"]["dlib-resnet-v1"])


@pytest.mark.parametrize("method", METHODS)
def test_the_posted_percent_rises_with_similarity(method):
    """Between 0 % and 100 % every step up in similarity gives a higher % (a constant would fail)."""
    cal = Calibration.load(method)
    low, high = cal.similarity_at(1), cal.similarity_at(99)
    confs = [cal.confidence(s) for s in np.linspace(low, high, 12)]
    assert np.all(np.diff(confs) > 0), confs
    assert confs[0] < 50 < confs[-1]
