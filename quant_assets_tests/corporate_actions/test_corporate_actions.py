"""Corporate actions: ledger intake, adjustment against the synthetic market's ground truth,
idempotency, atomicity, bad input, the jump check, and property tests of the factors."""

from __future__ import annotations

import logging
import threading
from functools import cache

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, text

from quant_assets.corporate_actions import adjusted_store, adjustment
from quant_assets.corporate_actions import ledger as action_ledger
from quant_assets.market import calendar
from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket
from quant_assets.storage.bars import write_bars
from quant_assets.storage.schema import adjusted_bars as adjusted_table

# Synthetic positions: AAPL (0) 2:1 split + quarterly dividends, MSFT (1) 3:1 split, NVDA (2)
# quarterly dividends (see the synthetic market's docstring).
TICKERS = ("AAPL", "MSFT", "NVDA")
MARKET = SyntheticMarket(SyntheticConfig(tickers=TICKERS, start="2026-01-02", end="2026-12-31"))
START = pd.Timestamp("2026-01-02", tz=calendar.MARKET_TZ).tz_convert("UTC")
END = pd.Timestamp("2027-01-01", tz=calendar.MARKET_TZ).tz_convert("UTC")
TODAY = pd.Timestamp("2026-12-31")
PRICES = ["open", "high", "low", "close"]
REL_TOL = 1e-9


@cache
def sampled_bars(ticker: str) -> pd.DataFrame:
    """Every session's first and last bar and each half hour: small, and C stays exact."""
    bars = MARKET.get_bars(ticker, START, END)
    session = calendar.session_labels(bars["ts"])
    edge = (session != session.shift(1)) | (session != session.shift(-1))
    keep = edge | (bars["ts"].dt.minute % 30 == 0)
    return bars[keep.to_numpy()].reset_index(drop=True)


def load_raw(engine: Engine, tickers=TICKERS, until: str | None = None) -> None:
    for ticker in tickers:
        bars = sampled_bars(ticker)
        if until is not None:
            bars = bars[calendar.session_labels(bars["ts"]) <= pd.Timestamp(until)]
        write_bars(bars, engine)


def market_ledger(tickers=TICKERS) -> pd.DataFrame:
    frames = [
        action_ledger.ledger_from_source(
            MARKET.get_splits(t), MARKET.get_dividends(t), "synthetic", pd.Timestamp.now("UTC")
        )
        for t in tickers
    ]
    return pd.concat(frames, ignore_index=True)


def truth(ticker: str, ts: pd.Series, as_of=None, kind="total_return") -> pd.DataFrame:
    true = MARKET.true_adjusted_bars(ticker, START, END, as_of=as_of, kind=kind)
    return true[true["ts"].isin(ts)].reset_index(drop=True)


def max_rel_error(got: pd.DataFrame, want: pd.DataFrame) -> float:
    assert got["ts"].tolist() == want["ts"].tolist()
    return max(float(np.max(np.abs(got[c].to_numpy() / want[c].to_numpy() - 1))) for c in PRICES)


def adjusted_rows(engine: Engine) -> pd.DataFrame:
    """The whole adjusted table, sorted, without built_at (the only column a rerun may change)."""
    cols = [c for c in adjustment.ADJUSTED_COLUMNS if c != "built_at"]
    with engine.connect() as conn:
        rows = conn.execute(
            select(*(adjusted_table.c[c] for c in cols)).order_by(
                adjusted_table.c.ticker, adjusted_table.c.ts
            )
        ).fetchall()
    frame = pd.DataFrame(rows, columns=cols)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["session"] = pd.to_datetime(frame["session"])
    return frame


# --- pure core ------------------------------------------------------------------------------------
@pytest.mark.parametrize("ticker", TICKERS)
def test_pure_adjustment_equals_ground_truth_every_minute(ticker: str) -> None:
    bars = MARKET.get_bars(ticker, START, END)  # every minute of the year
    ledger = market_ledger([ticker])
    as_of = calendar.session_of(bars["ts"].iloc[-1])
    plan = adjustment.plan_adjustment(
        ticker, ledger, as_of, adjustment.prior_closes(bars, ledger["ex_date"])
    )
    assert plan.skipped.empty and len(plan.applied) == len(ledger)
    adjusted = adjustment.adjust_bars(bars, plan.applied)
    for kind, column in (("total_return", "close"), ("split_only", "split_close")):
        want = MARKET.true_adjusted_bars(ticker, START, END, kind=kind)
        got = adjusted.assign(close=adjusted[column])
        if kind == "total_return":
            assert max_rel_error(got, want) < REL_TOL
        else:
            rel = np.abs(got["close"] / want["close"] - 1).max()
            assert rel < REL_TOL
        assert (adjusted["volume"].to_numpy() == want["volume"].to_numpy()).all()  # exact


def test_adjustment_as_of_an_earlier_date_matches_truth_as_of() -> None:
    bars = MARKET.get_bars("AAPL", START, END)
    as_of = pd.Timestamp("2026-05-01")  # before the split: only the first two dividends apply
    bars = bars[calendar.session_labels(bars["ts"]) <= as_of]
    ledger = market_ledger(["AAPL"])
    plan = adjustment.plan_adjustment(
        "AAPL", ledger, as_of, adjustment.prior_closes(bars, ledger["ex_date"])
    )
    assert len(plan.applied) == 2
    assert plan.pending()["action"].tolist() == ["split", "dividend", "dividend"]
    adjusted = adjustment.adjust_bars(bars, plan.applied)
    assert max_rel_error(adjusted, truth("AAPL", bars["ts"], as_of=as_of)) < REL_TOL


def test_plan_skips_bad_actions_with_reasons() -> None:
    bars = sampled_bars("NVDA")
    as_of = pd.Timestamp("2026-06-30")
    bars = bars[calendar.session_labels(bars["ts"]) <= as_of]
    ledger = pd.DataFrame(
        {
            "ticker": "NVDA",
            "ex_date": pd.to_datetime(
                [
                    "2026-03-02",
                    "2026-03-03",
                    "2026-03-04",
                    "2026-01-02",
                    "2026-09-01",
                    "2026-03-05",
                    "2026-03-06",
                ]
            ),
            "action": ["split", "split", "dividend", "split", "split", "merger", "dividend"],
            "value": [0.0, -2.0, 1e6, 2.0, 2.0, 1.0, 0.5],
        }
    )
    plan = adjustment.plan_adjustment(
        "NVDA", ledger, as_of, adjustment.prior_closes(bars, ledger["ex_date"])
    )
    reasons = dict(
        zip(plan.skipped["ex_date"].dt.strftime("%m-%d"), plan.skipped["reason"], strict=True)
    )
    assert reasons["03-02"] == reasons["03-03"] == "split ratio must be > 0"
    assert reasons["03-04"].startswith("dividend 1e+06 ≥ prior close")
    assert reasons["01-02"].startswith("before any data")
    assert reasons["09-01"].startswith("pending")
    assert reasons["03-05"].startswith("unknown action type")
    assert plan.applied["ex_date"].tolist() == [pd.Timestamp("2026-03-06")]
    assert 0 < plan.applied["price_factor"].iloc[0] < 1


def test_validate_actions_refuses_and_defers() -> None:
    frame = pd.DataFrame(
        {
            "ticker": ["AAPL", "ZZZZ", "AAPL", "AAPL", "AAPL", "AAPL", "AAPL", "AAPL"],
            "ex_date": pd.to_datetime(
                [
                    "2026-03-02",
                    "2026-03-02",
                    "2026-03-03",
                    "2026-03-04",
                    "2027-02-01",
                    "2026-03-05",
                    "2026-03-05",
                    "2026-03-06",
                ]
            ),
            "action": ["split"] * 7 + ["dividend"],
            "value": [2.0, 2.0, 0.0, np.nan, 2.0, 2.0, 3.0, -0.1],
        }
    )
    check = action_ledger.validate_actions(frame, TICKERS, today=TODAY)
    assert check.clean["ex_date"].tolist() == [pd.Timestamp("2026-03-02")]
    reasons = sorted(check.rejected["reason"])
    assert reasons == sorted(
        [
            "unknown ticker (not in the universe)",
            "split ratio must be > 0",
            "split ratio must be > 0",
            "conflicting duplicate rows for one (ticker, ex_date, action)",
            "conflicting duplicate rows for one (ticker, ex_date, action)",
            "dividend must be > 0",
        ]
    )
    assert check.deferred["reason"].str.startswith("dated in the future").all()


def test_jump_check_flags_a_missing_split_and_passes_the_true_ledger() -> None:
    bars = sampled_bars("AAPL")
    ledger = market_ledger(["AAPL"])
    as_of = calendar.session_of(bars["ts"].iloc[-1])
    closes = adjustment.prior_closes(bars, ledger["ex_date"])

    def jumps(led: pd.DataFrame) -> pd.DataFrame:
        plan = adjustment.plan_adjustment("AAPL", led, as_of, closes)
        boundaries = adjustment.session_boundaries(adjustment.adjust_bars(bars, plan.applied))
        return adjustment.find_unexplained_jumps(boundaries, ledger=led)

    assert jumps(ledger).empty
    missing = jumps(ledger[ledger["action"] != "split"])
    assert missing[["ticker", "session"]].values.tolist() == [["AAPL", pd.Timestamp("2026-05-28")]]
    assert missing["log_return"].iloc[0] == pytest.approx(-np.log(2), abs=0.1)
    wrong = ledger.copy()
    wrong.loc[wrong["action"] == "split", "value"] = 4.0  # wrong ratio: jump at a ledger date
    flagged = jumps(wrong)
    assert flagged["ledger_action"].tolist() == ["split 4:1 ex 2026-05-28"]


def test_jump_check_lists_a_move_across_a_long_hole() -> None:
    """A 12 % move across a 16-month hole is below any jump threshold but cannot be judged:
    it is listed with the hole's length; a short hole is judged like an overnight gap."""
    days = calendar.sessions("2023-07-03", "2025-07-31")
    kept = days[(days < "2023-09-01") | (days > "2025-01-10")]
    kept = kept[kept != kept[-5]]  # and a one-session hole near the end
    closes = 50 * np.exp(np.cumsum(np.random.default_rng(2).normal(0, 0.004, len(kept))))
    after = kept > "2025-01-10"
    closes[after] *= 1.12
    boundaries = pd.DataFrame(
        {"ticker": "THIN", "session": kept, "first_close": closes, "last_close": closes}
    )
    flagged = adjustment.find_unexplained_jumps(boundaries)
    assert len(flagged) == 1
    row = flagged.iloc[0]
    assert row["session"] == kept[after][0] and row["sessions_skipped"] > 300
    assert row["log_return"] == pytest.approx(np.log(1.12), abs=0.02)
    assert row["log_return"] < row["threshold"]  # not an outlier: listed for the hole alone


# --- property tests -------------------------------------------------------------------------------
SESSIONS = calendar.sessions("2026-01-02", "2026-03-31")


@st.composite
def ledgers(draw: st.DrawFn, max_actions: int = 6) -> pd.DataFrame:
    n = draw(st.integers(0, max_actions))
    idx = draw(st.lists(st.integers(1, len(SESSIONS) - 1), min_size=n, max_size=n, unique=True))
    rows = []
    for i in idx:
        if draw(st.booleans()):
            ratio = draw(st.sampled_from([0.1, 0.5, 1.5, 2.0, 3.0, 4.0, 7.0, 10.0]))
            rows.append(("split", SESSIONS[i], ratio))
        else:
            rows.append(("dividend", SESSIONS[i], draw(st.floats(0.0005, 0.2))))
    return pd.DataFrame(
        {
            "ticker": ["T"] * len(rows),
            "ex_date": pd.to_datetime([r[1] for r in rows]),
            "action": [r[0] for r in rows],
            "value": [r[2] for r in rows],
        }
    )


def synthetic_raw(ledger: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Two bars per session of an economic path, with the ledger's actions planted in the raw
    prices the way an exchange quotes them. Dividends in ``ledger`` are *yields*; they are
    turned into cash amounts (yield × prior raw close). Returns raw bars and the economic close.
    """
    rng = np.random.default_rng(seed)
    n = len(SESSIONS)
    econ = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 2 * n)))
    opens = [calendar.session_bounds(s)[0] for s in SESSIONS]
    ts = [t for o in opens for t in (o, o + pd.Timedelta(minutes=5))]
    k = np.ones(n)
    cash = {}
    for r in ledger.sort_values("ex_date").itertuples():
        s = SESSIONS.get_loc(r.ex_date)
        if r.action == "split":
            k[s:] /= r.value
        else:
            prior_close = econ[2 * s - 1] * k[s - 1]
            cash[r.ex_date] = r.value * prior_close
            k[s:] *= 1 - cash[r.ex_date] / prior_close
    raw_close = econ * np.repeat(k, 2)
    volume = np.full(2 * n, 1000, dtype=np.int64)
    bars = pd.DataFrame(
        {
            "ticker": "T",
            "ts": pd.DatetimeIndex(ts).tz_convert("UTC"),
            "open": raw_close,
            "high": raw_close,
            "low": raw_close,
            "close": raw_close,
            "volume": volume,
        }
    )
    return bars, econ


def cash_ledger(ledger: pd.DataFrame, bars: pd.DataFrame) -> pd.DataFrame:
    out = ledger.copy()
    closes = adjustment.prior_closes(bars, out["ex_date"])
    is_div = out["action"] == "dividend"
    out.loc[is_div, "value"] = [
        y * closes[d]
        for y, d in zip(out.loc[is_div, "value"], out.loc[is_div, "ex_date"], strict=True)
    ]
    return out


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(ledgers(), st.randoms(use_true_random=False))
def test_factors_do_not_depend_on_ledger_order(ledger: pd.DataFrame, rnd) -> None:
    bars, _ = synthetic_raw(ledger, 1)
    led = cash_ledger(ledger, bars)
    as_of = SESSIONS[-1]
    closes = adjustment.prior_closes(bars, led["ex_date"])
    shuffled = led.sample(frac=1, random_state=rnd.randint(0, 10**6))
    a = adjustment.adjust_bars(
        bars, adjustment.plan_adjustment("T", led, as_of, closes).applied, TODAY
    )
    b = adjustment.adjust_bars(
        bars, adjustment.plan_adjustment("T", shuffled, as_of, closes).applied, TODAY
    )
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@FAST
@given(ledgers(), ledgers())
def test_factors_compose_multiplicatively(first: pd.DataFrame, second: pd.DataFrame) -> None:
    second = second[~second["ex_date"].isin(first["ex_date"])]
    both = pd.concat([first, second], ignore_index=True)
    bars, _ = synthetic_raw(both, 2)
    led = cash_ledger(both, bars)
    closes = adjustment.prior_closes(bars, led["ex_date"])
    as_of = SESSIONS[-1]
    days = calendar.session_labels(bars["ts"])

    def factors(part: pd.DataFrame) -> pd.DataFrame:
        return adjustment.cumulative_factors(
            days, adjustment.plan_adjustment("T", part, as_of, closes).applied
        )

    a = factors(led.iloc[: len(first)])
    b = factors(led.iloc[len(first) :])
    ab = factors(led)
    np.testing.assert_allclose(ab.to_numpy(), a.to_numpy() * b.to_numpy(), rtol=1e-13)


@FAST
@given(ledgers(), st.integers(0, 2**16))
def test_adjusted_series_is_the_economic_path(ledger: pd.DataFrame, seed: int) -> None:
    """Whatever the actions, adjusted closes = economic closes × one constant, and a split
    leaves dollar volume unchanged; rebuilding from raw again gives the same table."""
    bars, econ = synthetic_raw(ledger, seed)
    led = cash_ledger(ledger, bars)
    plan = adjustment.plan_adjustment(
        "T", led, SESSIONS[-1], adjustment.prior_closes(bars, led["ex_date"])
    )
    assert len(plan.applied) == len(led)
    adjusted = adjustment.adjust_bars(bars, plan.applied, TODAY)
    ratio = adjusted["close"].to_numpy() / econ
    np.testing.assert_allclose(ratio, ratio[-1], rtol=1e-12)
    dollar = adjusted["split_close"] * adjusted["volume"]
    np.testing.assert_allclose(dollar, bars["close"] * bars["volume"], rtol=1e-12)
    again = adjustment.adjust_bars(bars, plan.applied, TODAY)
    pd.testing.assert_frame_equal(adjusted, again, check_exact=True)


def test_applied_json_round_trips_exactly() -> None:
    bars = sampled_bars("AAPL")
    ledger = market_ledger(["AAPL"])
    plan = adjustment.plan_adjustment(
        "AAPL", ledger, TODAY, adjustment.prior_closes(bars, ledger["ex_date"])
    )
    assert len(plan.applied) == 5
    back = adjustment.applied_from_json(adjustment.applied_to_json(plan.applied))
    pd.testing.assert_frame_equal(back, plan.applied.reset_index(drop=True), check_exact=True)


# --- database -------------------------------------------------------------------------------------
def ledger_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM corporate_actions")).scalar_one()


def test_fetch_twice_stores_once(engine: Engine) -> None:
    load_raw(engine)
    first = action_ledger.fetch_corporate_actions(list(TICKERS), MARKET, engine, today=TODAY)
    assert len(first.new) == 10 and first.rejected.empty and not first.errors
    stored = action_ledger.read_corporate_actions(engine)
    again = action_ledger.fetch_corporate_actions(list(TICKERS), MARKET, engine, today=TODAY)
    assert len(again.new) == 0 and len(again.revised) == 0 and again.unchanged == 10
    pd.testing.assert_frame_equal(action_ledger.read_corporate_actions(engine), stored)
    assert ledger_count(engine) == 10
    assert stored["processed_at"].isna().all()
    assert set(stored["action"]) == {"split", "dividend"}


def test_fetch_defers_future_actions_and_refuses_unknown_tickers(engine: Engine) -> None:
    load_raw(engine)
    result = action_ledger.fetch_corporate_actions(
        ["AAPL", "ZZZZ"], MARKET, engine, universe=TICKERS, today=pd.Timestamp("2026-06-30")
    )
    # AAPL: dividends on 01-16 and 04-20 and the split on 05-28 are due; two later dividends not.
    assert len(result.new) == 3 and len(result.deferred) == 2
    assert "ZZZZ" in result.errors and ledger_count(engine) == 3


def test_rebuild_equals_ground_truth_and_marks_processed(engine: Engine) -> None:
    load_raw(engine)
    action_ledger.fetch_corporate_actions(list(TICKERS), MARKET, engine, today=TODAY)
    builds = adjusted_store.rebuild_adjusted_bars(engine)
    assert [b.mode for b in builds] == ["full"] * 3
    worst = 0.0
    for ticker in TICKERS:
        for kind in ("total_return", "split_only"):
            got = adjusted_store.read_adjusted_bars(engine, [ticker], START, END, kind=kind)
            want = truth(ticker, got["ts"], kind=kind)
            worst = max(worst, max_rel_error(got, want))
            assert (got["volume"].to_numpy() == want["volume"].to_numpy()).all()
    assert worst < REL_TOL
    logging.getLogger(__name__).info("max relative error vs ground truth: %.2e", worst)
    assert action_ledger.read_corporate_actions(engine)["processed_at"].notna().all()
    assert [b.mode for b in adjusted_store.rebuild_adjusted_bars(engine)] == ["unchanged"] * 3


def test_three_runs_give_the_table_of_one(engine: Engine) -> None:
    load_raw(engine)
    action_ledger.fetch_corporate_actions(list(TICKERS), MARKET, engine, today=TODAY)
    adjusted_store.adjust_prices_for_splits(engine)
    adjusted_store.adjust_prices_for_dividends(engine)
    once = adjusted_rows(engine)
    assert set(once["ticker"]) == set(TICKERS)
    for _ in range(2):
        adjusted_store.adjust_prices_for_splits(engine)
        adjusted_store.adjust_prices_for_dividends(engine)
        adjusted_store.rebuild_adjusted_bars(engine, force=True)  # a real rewrite, not a no-op
        pd.testing.assert_frame_equal(adjusted_rows(engine), once, check_exact=True)


def test_exception_half_way_leaves_previous_data_then_next_run_completes(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_raw(engine, ["AAPL"])
    ledger = market_ledger(["AAPL"])
    action_ledger.record_corporate_actions(
        ledger[ledger["action"] != "split"], engine, TICKERS, today=TODAY
    )
    adjusted_store.rebuild_adjusted_bars(engine, ["AAPL"])
    before = adjusted_rows(engine)
    state = adjusted_store.read_build_state(engine, "AAPL")
    action_ledger.record_corporate_actions(
        ledger[ledger["action"] == "split"], engine, TICKERS, today=TODAY
    )

    monkeypatch.setattr(adjusted_store, "INSERT_CHUNK_ROWS", 500)
    real_insert = adjusted_store._insert_chunk
    calls = []

    def failing_insert(conn, chunk) -> None:
        calls.append(len(chunk))
        if len(calls) == 3:  # half-way: old rows deleted, two chunks of new rows inserted
            raise RuntimeError("injected failure")
        real_insert(conn, chunk)

    monkeypatch.setattr(adjusted_store, "_insert_chunk", failing_insert)
    with pytest.raises(RuntimeError, match="injected"):
        adjusted_store.rebuild_adjusted_bars(engine, ["AAPL"])
    assert len(calls) == 3 and len(before) > 5 * 500
    pd.testing.assert_frame_equal(adjusted_rows(engine), before, check_exact=True)
    after = adjusted_store.read_build_state(engine, "AAPL")
    assert after is not None and state is not None
    assert (after.ledger_hash, after.built_at) == (state.ledger_hash, state.built_at)
    stored = action_ledger.read_corporate_actions(engine, ["AAPL"])
    assert stored.loc[stored["action"] == "split", "processed_at"].isna().all()

    monkeypatch.setattr(adjusted_store, "_insert_chunk", real_insert)
    (build,) = adjusted_store.rebuild_adjusted_bars(engine, ["AAPL"])
    assert build.mode == "full" and build.changes == ["new split 2:1 ex 2026-05-28"]
    got = adjusted_store.read_adjusted_bars(engine, ["AAPL"], START, END)
    assert max_rel_error(got, truth("AAPL", got["ts"])) < REL_TOL


def test_a_new_action_makes_earlier_sessions_stale_and_rebuilds_them(engine: Engine) -> None:
    load_raw(engine, ["MSFT"], until="2026-08-26")  # the 3:1 split is ex 2026-08-27
    action_ledger.fetch_corporate_actions(["MSFT"], MARKET, engine, universe=TICKERS, today=TODAY)
    (first,) = adjusted_store.rebuild_adjusted_bars(engine, ["MSFT"])
    assert first.plan.applied.empty and len(first.plan.pending()) == 1
    got = adjusted_store.read_adjusted_bars(engine, ["MSFT"], START, END)
    assert max_rel_error(got, truth("MSFT", got["ts"], as_of="2026-08-26")) < REL_TOL
    assert adjusted_store.find_stale_tickers(engine, ["MSFT"]) == []

    load_raw(engine, ["MSFT"], until="2026-09-02")  # data crosses the ex-date
    (stale,) = adjusted_store.find_stale_tickers(engine, ["MSFT"])
    assert stale.changes == ["new split 3:1 ex 2026-08-27"]
    sessions_before = calendar.sessions("2026-01-02", "2026-08-26")
    assert stale.stale_sessions == len(sessions_before)
    new_days = list(calendar.sessions("2026-08-27", "2026-09-02"))
    (build,) = adjusted_store.rebuild_adjusted_bars(engine, sessions={"MSFT": new_days})
    assert build.mode == "full" and len(build.stale_sessions) == len(sessions_before)
    assert build.summary().startswith(f"rebuilt {len(sessions_before)} earlier sessions of MSFT")
    got = adjusted_store.read_adjusted_bars(engine, ["MSFT"], START, END)
    assert max_rel_error(got, truth("MSFT", got["ts"], as_of="2026-09-02")) < REL_TOL
    assert adjusted_store.find_stale_tickers(engine, ["MSFT"]) == []

    load_raw(engine, ["MSFT"], until="2026-09-09")  # more data, no new action: only new sessions
    more = list(calendar.sessions("2026-09-03", "2026-09-09"))
    (inc,) = adjusted_store.rebuild_adjusted_bars(engine, sessions={"MSFT": more})
    assert inc.mode == "sessions" and inc.sessions_written == more
    got = adjusted_store.read_adjusted_bars(engine, ["MSFT"], START, END)
    assert max_rel_error(got, truth("MSFT", got["ts"], as_of="2026-09-09")) < REL_TOL


def test_bad_input_is_refused_or_skipped_and_changes_nothing(engine: Engine, caplog) -> None:
    load_raw(engine, ["AAPL", "NVDA"], until="2026-06-30")
    action_ledger.fetch_corporate_actions(
        ["AAPL", "NVDA"], MARKET, engine, universe=TICKERS, today=TODAY
    )
    adjusted_store.rebuild_adjusted_bars(engine)
    table, ledger = adjusted_rows(engine), action_ledger.read_corporate_actions(engine)
    close_before = adjustment.prior_closes(sampled_bars("NVDA"), [pd.Timestamp("2026-03-10")])[
        pd.Timestamp("2026-03-10")
    ]
    bad = pd.DataFrame(
        {
            "ticker": ["NVDA", "NVDA", "NVDA", "ZZZZ", "NVDA"],
            "ex_date": pd.to_datetime(
                ["2026-03-02", "2026-03-03", "2026-03-10", "2026-03-04", "2027-03-01"]
            ),
            "action": ["split", "split", "dividend", "split", "split"],
            "value": [0.0, -1.0, close_before * 1.01, 2.0, 2.0],
        }
    )
    with caplog.at_level(logging.INFO, logger="quant_assets.corporate_actions"):
        result = action_ledger.record_corporate_actions(bad, engine, TICKERS, today=TODAY)
    assert len(result.rejected) == 4 and len(result.deferred) == 1 and result.new.empty
    assert "dividend" in caplog.text and "≥ prior close" in caplog.text
    assert "unknown ticker" in caplog.text and "split ratio must be > 0" in caplog.text
    pd.testing.assert_frame_equal(action_ledger.read_corporate_actions(engine), ledger)

    # Actions stored before any data, or dated after the data: logged skips, nothing changes.
    early = pd.DataFrame(
        {
            "ticker": ["NVDA", "NVDA"],
            "ex_date": pd.to_datetime(["2026-01-02", "2026-09-01"]),
            "action": ["split", "split"],
            "value": [5.0, 4.0],
        }
    )
    assert len(action_ledger.record_corporate_actions(early, engine, TICKERS, today=TODAY).new) == 2
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="quant_assets.corporate_actions"):
        builds = adjusted_store.rebuild_adjusted_bars(engine, force=True)
    assert "pending: ex-date after the last stored session" in caplog.text
    assert "NVDA: skipped 1 action(s) dated before any stored data" in caplog.text
    nvda = next(b for b in builds if b.ticker == "NVDA")
    skipped = nvda.plan.skipped.set_index("ex_date")["reason"]
    assert skipped[pd.Timestamp("2026-01-02")].startswith("before any data")
    assert skipped[pd.Timestamp("2026-09-01")].startswith("pending")
    pd.testing.assert_frame_equal(adjusted_rows(engine), table, check_exact=True)
    stored = action_ledger.read_corporate_actions(engine, ["NVDA"])
    assert stored.loc[stored["action"] == "split", "processed_at"].isna().all()


def test_revised_action_replaces_the_row_and_is_reprocessed(engine: Engine) -> None:
    load_raw(engine, ["NVDA"])
    action_ledger.fetch_corporate_actions(["NVDA"], MARKET, engine, universe=TICKERS, today=TODAY)
    adjusted_store.rebuild_adjusted_bars(engine)
    ledger = action_ledger.read_corporate_actions(engine)
    revised = ledger.iloc[[1]].assign(value=ledger["value"].iloc[1] * 1.1)
    result = action_ledger.record_corporate_actions(revised, engine, TICKERS, today=TODAY)
    assert len(result.revised) == 1
    stored = action_ledger.read_corporate_actions(engine)
    assert pd.isna(stored["processed_at"].iloc[1]) and stored["value"].iloc[1] > ledger["value"][1]
    (stale,) = adjusted_store.find_stale_tickers(engine, ["NVDA"])
    assert stale.changes[0].startswith("revised dividend")
    (build,) = adjusted_store.rebuild_adjusted_bars(engine)
    assert build.mode == "full" and build.stale_sessions
    assert action_ledger.read_corporate_actions(engine)["processed_at"].notna().all()


def test_state_and_adjusted_rows_are_per_ticker(engine: Engine) -> None:
    load_raw(engine, ["AAPL", "NVDA"], until="2026-02-27")
    action_ledger.fetch_corporate_actions(
        ["AAPL", "NVDA"], MARKET, engine, universe=TICKERS, today=TODAY
    )
    adjusted_store.rebuild_adjusted_bars(engine)
    with engine.connect() as conn:
        per_ticker = dict(
            conn.execute(
                select(adjusted_table.c.ticker, func.count()).group_by(adjusted_table.c.ticker)
            ).fetchall()
        )
    raw = {t: len(sampled_bars(t)[sampled_bars(t)["ts"] < "2026-02-28"]) for t in ("AAPL", "NVDA")}
    assert per_ticker == raw
    state = adjusted_store.read_build_state(engine, "AAPL")
    assert state is not None and state.as_of == pd.Timestamp("2026-02-27")
    assert state.raw_rows == raw["AAPL"]


def test_concurrent_rebuilds_of_one_ticker_serialize(engine: Engine) -> None:
    load_raw(engine, ["AAPL"])
    action_ledger.fetch_corporate_actions(["AAPL"], MARKET, engine, universe=TICKERS, today=TODAY)
    adjusted_store.rebuild_adjusted_bars(engine, ["AAPL"])
    once = adjusted_rows(engine)
    errors: list[BaseException] = []

    def build() -> None:
        try:
            adjusted_store.rebuild_adjusted_bars(engine, ["AAPL"], force=True)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    pd.testing.assert_frame_equal(adjusted_rows(engine), once, check_exact=True)
