"""Reference statistics and the concept baseline: builders, time buckets, atoms, JSON round trip
(including the format before atoms)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from quant_assets.drift.reference import (
    DEFAULT_BUCKET_EDGES,
    ConceptBaseline,
    ReferenceStats,
    check_bucket_edges,
    concept_baseline_from_probs,
    effective_size,
    reference_stats_from_frame,
    time_bucket,
)
from quant_assets.drift.report import evaluate_window
from quant_assets.drift.thresholds import DriftThresholds
from quant_assets.features.spec import CALENDAR_FEATURES
from quant_assets.market.calendar import session_minute
from quant_assets_tests.drift.helpers import minute_frame, zero_inflated_frame


def test_time_buckets():
    ts = pd.DatetimeIndex(
        ["2026-03-02 09:30", "2026-03-02 09:39", "2026-03-02 09:40", "2026-03-02 10:15",
         "2026-03-02 15:59", "2026-03-02 08:00", "2026-03-02 17:30"],
        tz="America/New_York",
    ).tz_convert("UTC")  # fmt: skip
    assert session_minute(ts).tolist() == [0, 9, 10, 45, 389, -90, 480]
    b = time_bucket(ts, DEFAULT_BUCKET_EDGES)
    last = len(DEFAULT_BUCKET_EDGES) - 2
    assert b.tolist() == [0, 0, 1, 3, last, 0, last]
    assert check_bucket_edges([0, 30, 390]) == (0, 30, 390)
    for bad in ([5, 390], [0, 30, 30], [0]):
        with pytest.raises(ValueError, match="bucket edges"):
            check_bucket_edges(bad)


def test_builder_measures_autocorrelation_on_ranks():
    frame = minute_frame(tickers=("A", "B", "C", "D"), sessions=10, phi=0.9)
    ref = reference_stats_from_frame(frame, ["x", "y", *CALENDAR_FEATURES])
    assert ref.columns == ("x", "y")  # calendar encodings are not monitored
    assert ref.excluded == CALENDAR_FEATURES
    x, y = ref.features["x"], ref.features["y"]
    # rank autocorrelation of a Gaussian AR(1): (6/pi) asin(phi/2) ~ 0.89 at lag 1
    assert x.acf[0] == pytest.approx(6 / np.pi * np.arcsin(0.45), abs=0.02)
    assert 12 < x.tau < 22  # (1 + 0.9) / (1 - 0.9) = 19 for the values themselves
    assert y.tau == pytest.approx(1.0, abs=0.15)
    assert x.cross_corr == pytest.approx(0.0, abs=0.06)  # independent tickers (noisy estimate)
    # deciles: ten equal pooled shares, nine interior edges, quantiles at the levels
    assert x.bins == 10 and x.shares == pytest.approx(np.full(10, 0.1), abs=2e-3)
    assert x.quantiles[0] == frame["x"].min() and x.quantiles[-1] == frame["x"].max()
    assert x.bucket_shares.shape == (ref.n_buckets, 10)
    assert np.allclose(x.bucket_shares.sum(axis=1), 1.0)
    # effective sizes: a bucket holds ~n / tau independent values
    assert x.bucket_n.sum() == len(frame)
    assert (x.bucket_n_eff < x.bucket_n / 5).all() and (y.bucket_n_eff > y.bucket_n / 1.5).all()


def test_cross_correlation_between_tickers():
    frame = minute_frame(tickers=("A", "B", "C"), sessions=6, phi=0.5, common=0.6, seed=3)
    ref = reference_stats_from_frame(frame, ["x"])
    assert ref.features["x"].cross_corr == pytest.approx(0.6, abs=0.1)
    single = reference_stats_from_frame(frame[frame.ticker == "A"], ["x"])
    assert single.features["x"].cross_corr == 0.0


def test_mixture_of_buckets():
    frame = minute_frame(sessions=6, phi=0.0)
    # a strong time-of-day pattern: the first 30 minutes are shifted up by 3
    first = session_minute(frame["ts"]) < 30
    frame.loc[first, "x"] += 3.0
    ref = reference_stats_from_frame(frame, ["x"])
    fx = ref.features["x"]
    morning = ref.bucket_weights(frame.loc[first, "ts"])
    midday = ref.bucket_weights(frame.loc[~first, "ts"])
    assert morning[:3].sum() == pytest.approx(1.0)
    # the morning buckets expect the top bins, midday the others; pooled is in between
    assert fx.expected_shares(morning)[-1] > 0.7 and fx.expected_shares(midday)[-1] < 0.05
    assert fx.cdf(np.array([1.0]), morning)[0] < 0.05
    assert fx.cdf(np.array([1.0]), midday)[0] > 0.8
    assert fx.cdf(np.array([-1e9, 1e9]), None).tolist() == [0.0, 1.0]
    assert fx.reference_n_eff(morning) < fx.reference_n_eff(None)


def test_json_round_trip_is_exact_enough():
    frame = minute_frame(sessions=4)
    ref = reference_stats_from_frame(frame, ["x", "y"])
    data = json.loads(json.dumps(ref.to_dict()))
    back = ReferenceStats.from_dict(data)
    assert back.columns == ref.columns and back.bucket_edges == ref.bucket_edges
    for name in ref.columns:
        a, b = ref.features[name], back.features[name]
        for attr in ("edges", "shares", "quantiles", "bucket_shares", "bucket_quantiles", "acf"):
            assert np.allclose(getattr(a, attr), getattr(b, attr), rtol=1e-7, atol=0)
        assert a.n == b.n and a.cross_corr == pytest.approx(b.cross_corr)
    assert back.to_dict() == data
    with pytest.raises(ValueError, match="format"):
        ReferenceStats.from_dict({**data, "format": 99})
    broken = json.loads(json.dumps(data))
    broken["features"]["x"]["shares"] = [0.5, 0.5]
    with pytest.raises(ValueError, match="bins"):
        ReferenceStats.from_dict(broken)


def test_builder_errors():
    frame = minute_frame(sessions=2)
    with pytest.raises(ValueError, match="lack"):
        reference_stats_from_frame(frame.drop(columns="ts"), ["x"])
    with pytest.raises(ValueError, match="monitored"):
        reference_stats_from_frame(frame, list(CALENDAR_FEATURES))
    with pytest.raises(ValueError, match="too few"):
        reference_stats_from_frame(frame.head(10), ["x"])
    frame.loc[:, "y"] = np.nan
    with pytest.raises(ValueError, match="'y'"):
        reference_stats_from_frame(frame, ["x", "y"])


def dirichlet_probs(rng, n, conc=(2.0, 3.0, 2.0)):
    return rng.dirichlet(conc, size=n)


def test_concept_baseline_iid_and_round_trip():
    rng = np.random.default_rng(7)
    probs = dirichlet_probs(rng, 60 * 200)
    base = concept_baseline_from_probs(probs, window=60)
    conf = probs.max(axis=1)
    assert base.mean_max_prob == pytest.approx(conf.mean())
    # iid rows: the spread of 60-row means is the row sd / sqrt(60)
    assert base.sd_max_prob == pytest.approx(conf.std() / np.sqrt(60), rel=0.15)
    assert base.n_windows == 200 and base.cross_corr == 0.0
    back = ConceptBaseline.from_dict(json.loads(json.dumps(base.to_dict())))
    assert back.to_dict() == base.to_dict()
    with pytest.raises(ValueError, match="windows"):
        concept_baseline_from_probs(probs[:100], window=60)
    with pytest.raises(ValueError, match="probs"):
        concept_baseline_from_probs(np.ones(10), window=2)


def test_concept_baseline_time_of_day_and_tickers():
    frame = minute_frame(tickers=("A", "B", "C"), sessions=6)
    rng = np.random.default_rng(8)
    n = len(frame)
    opening = session_minute(frame["ts"]) < 20
    shared = rng.normal(size=n // 3)
    # confident at the open, and a market-wide component shared by the tickers at each minute
    logit = 1.0 + 2.0 * opening + 0.8 * np.tile(shared, 3) + 0.3 * rng.normal(size=n)
    p_up = 1 / (1 + np.exp(-logit))
    probs = np.stack([(1 - p_up) / 2, (1 - p_up) / 2, p_up], axis=1)
    base = concept_baseline_from_probs(probs, 60, groups=frame["ticker"], ts=frame["ts"])
    open_c, _ = base.expected(frame.loc[opening, "ts"])
    mid_c, _ = base.expected(frame.loc[~opening, "ts"])
    assert open_c > mid_c + 0.05
    assert base.expected(None)[0] == pytest.approx(base.mean_max_prob)
    assert base.cross_corr > 0.5
    sd1 = base.sd_of_mean(180, 1)[0]
    sd3 = base.sd_of_mean(180, 3)[0]
    assert sd3 > sd1 and effective_size(3, np.zeros(1)) == 3.0


NEW_FIELDS = ("atoms", "atom_acf", "atom_cross_corr", "bucket_atom_n_eff")


def test_atoms_and_the_continuous_part():
    frame = zero_inflated_frame(sessions=6, zero_share=0.45)
    ref = reference_stats_from_frame(frame, ["x"]).features["x"]
    assert ref.atoms.tolist() == [0.0] and ref.has_continuous
    zeros = float(np.mean(frame["x"] == 0.0))
    # categories: the atom first, then the deciles of the values off it
    assert ref.bins == 11 and ref.shares[0] == pytest.approx(zeros, abs=1e-3)
    assert ref.shares[1:] == pytest.approx(np.full(10, (1 - zeros) / 10), abs=2e-3)
    assert 0.0 not in ref.quantiles[1:-1]  # the CDF is that of the non-zero values
    assert ref.bin_index(np.array([0.0, -1e-12, 1e-12])).tolist()[0] == 0
    assert ref.full_cdf(np.array([-1e-12, 0.0]), None) == pytest.approx([0.5 - zeros / 2,
                                                                          0.5 + zeros / 2],
                                                                         abs=0.01)  # fmt: skip
    assert ref.bucket_atom_n_eff.sum() == pytest.approx(len(frame), rel=0.2)  # iid indicator
    # no atoms below the share, or when switched off
    assert reference_stats_from_frame(frame, ["y"]).features["y"].atoms.size == 0
    assert reference_stats_from_frame(frame, ["x"], atom_share=None).features["x"].atoms.size == 0


def test_json_round_trip_with_atoms_is_exact():
    frame = zero_inflated_frame(sessions=4)
    frame["z"] = np.round(frame["y"], 1) / 3  # a discrete feature with values not exact in JSON
    ref = reference_stats_from_frame(frame, ["x", "z"])
    data = json.loads(json.dumps(ref.to_dict()))
    back = ReferenceStats.from_dict(data)
    assert data["format"] == 2 and back.to_dict() == data
    z = back.features["z"]
    assert np.array_equal(z.atoms, ref.features["z"].atoms) and z.atoms.size > 3
    values = frame["z"].to_numpy()
    assert np.array_equal(z.atom_of(values) >= 0, ref.features["z"].atom_of(values) >= 0)


def test_format_1_reference_loads_as_no_atoms():
    frame = zero_inflated_frame(sessions=4)
    ref = reference_stats_from_frame(frame, ["x", "y"], atom_share=None)
    new = json.loads(json.dumps(ref.to_dict()))
    old = json.loads(json.dumps(new))
    old["format"] = 1  # what bundles wrote before atoms: the same fields without the new ones
    for entry in old["features"].values():
        for key in NEW_FIELDS:
            del entry[key]
    back = ReferenceStats.from_dict(old)
    x = back.features["x"]
    assert x.atoms.size == 0 and x.bucket_atom_n_eff.shape == (back.n_buckets,)
    assert x.bins == x.edges.size + 1 < 10  # as format 1 had it: the deciles tied at 0 merged
    live = zero_inflated_frame(sessions=1, first="2026-04-01", seed=3)
    a = evaluate_window(live.head(180), ReferenceStats.from_dict(new), DriftThresholds())
    b = evaluate_window(live.head(180), back, DriftThresholds())
    assert a.to_dict()["features"] == b.to_dict()["features"]  # NaN -> None, comparable
    assert b.features[0].p_eff < 1e-6  # ties tested as continuous until a retrain adds atoms
    assert back.to_dict()["format"] == 2
