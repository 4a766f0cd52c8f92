"""Metrics, paired block bootstrap and the promotion decision on constructed predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score, log_loss, precision_score

from quant_assets.deployment.decision import (
    BASELINE,
    DecisionRule,
    NetValue,
    block_bootstrap_sums,
    compute_metrics,
    decide,
    decision_summary,
    majority_baseline,
    net_value,
    paired_block_bootstrap,
    predict,
)
from quant_assets.labels import CLASS_ORDER
from quant_assets_tests.deployment.helpers import labels, model_with_accuracy, probs_from_classes

FAST = DecisionRule(n_boot=500)


# --- metrics ---------------------------------------------------------------------------------
def test_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(3)
    y = labels(2000, seed=1)
    p = rng.dirichlet([1, 1, 1], size=len(y))
    m = compute_metrics(y, p)
    pred = predict(p)
    assert m.macro_f1_updown == pytest.approx(
        f1_score(y, pred, labels=[1, -1], average="macro"), abs=1e-12
    )
    assert m.precision_up == pytest.approx(precision_score(y, pred, labels=[1], average="macro"))
    assert m.precision_down == pytest.approx(precision_score(y, pred, labels=[-1], average="macro"))
    assert m.log_loss == pytest.approx(log_loss(y, p, labels=list(CLASS_ORDER)), rel=1e-9)
    assert m.n == len(y)


def test_never_calling_a_class_gives_zero_not_nan() -> None:
    y = np.array([1, -1, 0, 0] * 50, dtype=np.int8)
    neutral_only = probs_from_classes(np.ones(len(y), dtype=int))
    m = compute_metrics(y, neutral_only)
    assert m.macro_f1_updown == 0.0 and m.precision_up == 0.0 and m.precision_down == 0.0
    assert math.isfinite(m.log_loss)


def test_bad_inputs_are_rejected() -> None:
    y = np.array([1, 0, -1], dtype=np.int8)
    with pytest.raises(ValueError, match="shape"):
        compute_metrics(y, np.ones((3, 2)))
    with pytest.raises(ValueError, match="labels"):
        compute_metrics(np.array([2, 0, 1]), np.full((3, 3), 1 / 3))
    with pytest.raises(ValueError, match="finite"):
        compute_metrics(y, np.full((3, 3), np.nan))


def test_majority_baseline_predicts_the_most_frequent_class() -> None:
    y = labels(1000, seed=2, p=(0.2, 0.5, 0.3))
    base = majority_baseline(y)
    assert (predict(base) == 0).all()
    assert base[0] == pytest.approx([(y == c).mean() for c in CLASS_ORDER], abs=1e-5)


# --- bootstrap -------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["circular", "moving"])
@pytest.mark.parametrize(("n", "block"), [(50, 7), (50, 1), (48, 12), (10, 30)])
def test_block_sums_equal_explicit_resampling(scheme: str, n: int, block: int) -> None:
    rng = np.random.default_rng(0)
    units = rng.normal(size=(n, 3))
    got = block_bootstrap_sums(units, block_length=block, n_boot=40, seed=9, scheme=scheme)
    # The same draws, resampled row by row.
    length = min(block, n)
    k = math.ceil(n / length)
    n_starts = n if scheme == "circular" else n - length + 1
    starts = np.random.default_rng(9).integers(0, n_starts, size=(40, k))
    for b in range(40):
        idx = np.concatenate([(s + np.arange(length)) % n for s in starts[b]])[:n]
        assert len(idx) == n
        np.testing.assert_allclose(got[b], units[idx].sum(axis=0), atol=1e-9)


def test_bootstrap_is_deterministic_given_a_seed() -> None:
    y = labels(1500, seed=4, run=10)
    a = model_with_accuracy(y, 0.45, seed=1, run=10)
    b = model_with_accuracy(y, 0.50, seed=2, run=10)
    r1 = paired_block_bootstrap(y, a, b, seed=123, n_boot=400)
    r2 = paired_block_bootstrap(y, a, b, seed=123, n_boot=400)
    r3 = paired_block_bootstrap(y, a, b, seed=124, n_boot=400)
    assert r1 == r2
    assert (r1.ci_low, r1.ci_high) != (r3.ci_low, r3.ci_high)
    assert r1.delta_macro_f1 == r3.delta_macro_f1  # point estimate does not depend on the seed


def test_time_keys_resample_whole_timestamps() -> None:
    # Two tickers per minute, rows interleaved: grouping by timestamp equals summing the
    # pairs first.
    y = labels(600, seed=5, run=2)
    a = model_with_accuracy(y, 0.4, seed=1)
    b = model_with_accuracy(y, 0.6, seed=2)
    keys = np.repeat(np.arange(300), 2)
    grouped = paired_block_bootstrap(y, a, b, time_keys=keys, block_length=10, n_boot=300)
    assert grouped.n_units == 300
    shuffled = np.random.default_rng(0).permutation(600)
    again = paired_block_bootstrap(
        y[shuffled],
        a[shuffled],
        b[shuffled],
        time_keys=keys[shuffled],
        block_length=10,
        n_boot=300,
    )
    assert again.confidence == pytest.approx(grouped.confidence)
    assert again.ci_low == pytest.approx(grouped.ci_low)


def block_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """20 runs of 30 rows (UP/DOWN alternating); wrong calls are Neutral.

    Champion right on runs 0-9; challenger right on runs 0-8, 10 and 11: one run better
    (Δmacro-F1 ≈ +0.04 ≥ margin) but decided by 3 runs out of 20.
    """
    run, n_runs = 30, 20
    y_runs = np.where(np.arange(n_runs) % 2 == 0, 1, -1)
    y = y_runs.repeat(run).astype(np.int8)
    y_idx = np.searchsorted(CLASS_ORDER, y)
    champ_ok = np.isin(np.arange(n_runs), range(10)).repeat(run)
    chal_ok = np.isin(np.arange(n_runs), [*range(9), 10, 11]).repeat(run)
    champ = probs_from_classes(np.where(champ_ok, y_idx, 1))
    chal = probs_from_classes(np.where(chal_ok, y_idx, 1))
    return y, champ, chal


def test_autocorrelated_errors_need_blocks() -> None:
    y, champ, chal = block_case()
    iid = paired_block_bootstrap(y, champ, chal, block_length=1, n_boot=2000)
    blocks = paired_block_bootstrap(y, champ, chal, block_length=30, n_boot=2000)
    assert iid.delta_macro_f1 == blocks.delta_macro_f1 > 0.02
    assert iid.confidence > 0.99  # rows treated as independent: falsely sure
    assert blocks.confidence < 0.9  # only 3 independent runs differ: not sure at all


# --- decision --------------------------------------------------------------------------------
def test_clearly_better_challenger_wins() -> None:
    y = labels(3000, seed=7, run=15)
    champ = model_with_accuracy(y, 0.40, seed=1, run=15)
    chal = model_with_accuracy(y, 0.60, seed=2, run=15)
    d = decide(y, {"transformer_v2": chal}, ("lstm_v1", champ), FAST)
    assert d.outcome == "promote" and d.winner == "transformer_v2"
    (c,) = d.comparisons
    assert c.bootstrap.delta_macro_f1 > 0.1 and c.bootstrap.confidence >= 0.99
    assert "transformer_v2 replaces lstm_v1" in d.reason


def test_marginally_better_challenger_does_not_win() -> None:
    y = labels(3000, seed=8, run=15)
    champ = model_with_accuracy(y, 0.45, seed=1, run=15)
    # The challenger fixes 1 % of the champion's wrong calls: better, but by < margin.
    y_idx = np.searchsorted(CLASS_ORDER, y)
    pred = np.argmax(champ, axis=1)
    wrong = np.flatnonzero(pred != y_idx)
    fixed = pred.copy()
    fixed[wrong[: len(wrong) // 100]] = y_idx[wrong[: len(wrong) // 100]]
    chal = probs_from_classes(fixed)
    d = decide(y, {"lstm_v2": chal}, ("lstm_v1", champ), FAST)
    (c,) = d.comparisons
    assert 0 < c.bootstrap.delta_macro_f1 < 0.02
    assert d.outcome == "keep" and d.winner == "lstm_v1"
    assert "F1 margin FAIL" in d.reason and "lstm_v1 stays champion" in d.reason


def test_better_by_margin_but_not_confident_does_not_win() -> None:
    y, champ, chal = block_case()
    d = decide(y, {"lstm_v2": chal}, ("lstm_v1", champ), DecisionRule(min_samples=100))
    (c,) = d.comparisons
    assert c.beats_margin and not c.confident
    assert d.outcome == "keep"
    # With i.i.d. resampling the same data would have promoted: the blocks are what stops it.
    iid = decide(
        y, {"lstm_v2": chal}, ("lstm_v1", champ), DecisionRule(min_samples=100, block_length=1)
    )
    assert iid.outcome == "promote"


def test_first_run_promotes_only_a_model_beating_the_majority_baseline() -> None:
    y = labels(3000, seed=9, run=10, p=(0.25, 0.5, 0.25))
    good = model_with_accuracy(y, 0.7, seed=1, run=10)
    d = decide(y, {"lstm_v1": good}, None, FAST)
    assert d.outcome == "promote" and d.winner == "lstm_v1"
    assert d.comparisons[0].reference == BASELINE
    # A coin-flipping model gets a positive UP/DOWN F1 on a Neutral-majority set, but no
    # better log-loss than the class frequencies: no champion.
    rng = np.random.default_rng(0)
    coin = rng.dirichlet([1, 1, 1], size=len(y))
    d = decide(y, {"lstm_v1": coin}, None, FAST)
    assert d.outcome == "no_champion" and d.winner is None
    assert "log-loss below the baseline's FAIL" in d.reason


def test_best_of_several_challengers_and_bonferroni() -> None:
    y = labels(3000, seed=10, run=15)
    champ = model_with_accuracy(y, 0.40, seed=1, run=15)
    ok = model_with_accuracy(y, 0.55, seed=2, run=15)
    best = model_with_accuracy(y, 0.65, seed=3, run=15)
    d = decide(y, {"lstm_v2": ok, "transformer_v2": best}, ("lstm_v1", champ), FAST)
    assert d.winner == "transformer_v2"
    assert all(c.required_confidence == pytest.approx(0.975) for c in d.comparisons)
    table = d.comparison_table()
    assert "| transformer_v2 | challenger | **promoted** |" in table
    assert "| lstm_v1 | champion | reference |" in table
    assert "| majority_baseline | baseline |" in table
    summary = decision_summary(d)
    assert summary["outcome"] == "promote" and len(summary["comparisons"]) == 2


def test_too_few_samples_never_promote() -> None:
    y = labels(200, seed=11)
    d = decide(y, {"b_v2": model_with_accuracy(y, 1.0, seed=1)}, ("a_v1", majority_baseline(y)))
    assert d.outcome == "keep" and "min_samples" in d.reason


def test_champion_is_not_its_own_challenger() -> None:
    y = labels(1000, seed=12)
    p = model_with_accuracy(y, 0.5, seed=1)
    d = decide(y, {"lstm_v1": p}, ("lstm_v1", p), FAST)
    assert d.outcome == "keep" and d.comparisons == []


def test_decision_is_deterministic() -> None:
    y = labels(2000, seed=13, run=20)
    champ = model_with_accuracy(y, 0.45, seed=1, run=20)
    chal = model_with_accuracy(y, 0.52, seed=2, run=20)
    a = decide(y, {"x_v2": chal}, ("x_v1", champ), FAST)
    b = decide(y, {"x_v2": chal}, ("x_v1", champ), FAST)
    assert a == b


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data_seed=st.integers(0, 2**32 - 1),
    rule_seed=st.integers(0, 2**32 - 1),
    n=st.integers(300, 1500),
    run=st.integers(1, 40),
    accuracy=st.floats(0.2, 0.9),
    degrade=st.floats(0.0, 0.5),
    margin=st.floats(0.0, 0.05),
    block=st.integers(1, 60),
)
def test_a_worse_challenger_never_wins(
    data_seed: int,
    rule_seed: int,
    n: int,
    run: int,
    accuracy: float,
    degrade: float,
    margin: float,
    block: int,
) -> None:
    y = labels(n, seed=data_seed % 2**31, run=run)
    champ = model_with_accuracy(y, accuracy, seed=data_seed % 997, run=run)
    # The challenger makes every mistake the champion makes, and more.
    rng = np.random.default_rng(data_seed)
    y_idx = np.searchsorted(CLASS_ORDER, y)
    pred = np.argmax(champ, axis=1)
    spoil = (pred == y_idx) & (rng.random(n) < degrade)
    worse = np.where(spoil, (y_idx + rng.integers(1, 3, size=n)) % 3, pred)
    rule = DecisionRule(
        margin=margin, seed=rule_seed, block_length=block, n_boot=200, min_samples=100
    )
    d = decide(
        y, {"worse_v2": probs_from_classes(worse)}, ("champ_v1", probs_from_classes(pred)), rule
    )
    assert d.comparisons[0].bootstrap.delta_macro_f1 <= 1e-12
    assert d.outcome == "keep"


@settings(max_examples=25, deadline=None)
@given(rule_seed=st.integers(0, 2**32 - 1), block=st.integers(1, 60))
def test_a_clearly_better_challenger_wins_for_any_seed(rule_seed: int, block: int) -> None:
    y = labels(3000, seed=21, run=15)
    champ = model_with_accuracy(y, 0.40, seed=1, run=15)
    chal = model_with_accuracy(y, 0.62, seed=2, run=15)
    rule = DecisionRule(seed=rule_seed, block_length=block, n_boot=300)
    assert decide(y, {"b_v2": chal}, ("a_v1", champ), rule).outcome == "promote"


def test_rule_validation() -> None:
    with pytest.raises(ValueError):
        DecisionRule(margin=-0.1)
    with pytest.raises(ValueError):
        DecisionRule(confidence=1.0)
    assert DecisionRule().required_confidence(2) == pytest.approx(0.975)
    assert DecisionRule(bonferroni=False).required_confidence(2) == 0.95


# --- the net value rule ----------------------------------------------------------------------
def value(net: float, confidence: float = 0.99) -> NetValue:
    return NetValue(net_pnl=net, confidence_positive=confidence, trades=100, cost_bps=1.0)


def test_a_first_champion_must_earn_after_costs_with_confidence() -> None:
    y = labels(3000, seed=9, run=10, p=(0.25, 0.5, 0.25))
    good = model_with_accuracy(y, 0.7, seed=1, run=10)
    earns = decide(y, {"lstm_v1": good}, None, FAST, values={"lstm_v1": value(0.02)})
    assert earns.outcome == "promote" and "net value pass" in earns.reason
    for net, conf in ((-0.01, 0.2), (0.01, 0.80)):  # loses; earns but not surely
        d = decide(y, {"lstm_v1": good}, None, FAST, values={"lstm_v1": value(net, conf)})
        assert d.outcome == "no_champion" and "net value FAIL" in d.reason
        assert "F1 margin pass" in d.reason  # every rule is listed with its verdict


def test_a_challenger_must_not_earn_less_than_the_champion() -> None:
    y = labels(3000, seed=7, run=15)
    champ = model_with_accuracy(y, 0.40, seed=1, run=15)
    chal = model_with_accuracy(y, 0.60, seed=2, run=15)
    models = {"transformer_v2": chal}
    better = decide(y, models, ("lstm_v1", champ), FAST,
                    values={"transformer_v2": value(0.03), "lstm_v1": value(0.02)})  # fmt: skip
    assert better.outcome == "promote"
    worse = decide(y, models, ("lstm_v1", champ), FAST,
                   values={"transformer_v2": value(0.01), "lstm_v1": value(0.02)})  # fmt: skip
    assert worse.outcome == "keep"
    assert "net value FAIL" in worse.reason and "vs lstm_v1's +2.0000%" in worse.reason
    unknown = decide(y, models, ("lstm_v1", champ), FAST)
    assert unknown.outcome == "promote" and "net value not evaluated" in unknown.reason


def test_net_value_bootstraps_whole_timestamps() -> None:
    rng = np.random.default_rng(0)
    minutes = np.repeat(np.arange(2000), 4)  # four tickers a minute
    edge = rng.normal(2e-4, 1e-3, len(minutes))
    noise = rng.normal(0.0, 1e-3, len(minutes))
    sure = net_value(edge, minutes, trades=len(minutes), cost_bps=1.0, rule=FAST)
    unsure = net_value(noise, minutes, trades=len(minutes), cost_bps=1.0, rule=FAST)
    assert sure.net_pnl == pytest.approx(edge.sum()) and sure.confidence_positive > 0.99
    assert 0.01 < unsure.confidence_positive < 0.99
    empty = net_value(np.zeros(0), np.zeros(0, np.int64), trades=0, cost_bps=1.0)
    assert (empty.net_pnl, empty.confidence_positive) == (0.0, 0.0)
