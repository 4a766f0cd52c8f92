"""``quant import``'s core: the span to import, and the per-ticker report of what is stored."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from quant_assets.ingestion.history_import import HistoryImportError, import_report, import_span
from quant_assets.ingestion.sessions import ingest_sessions
from quant_assets.market import calendar
from quant_assets.market.file_source import FileSource
from quant_assets.market.synthetic import SyntheticConfig, synthetic_market
from quant_assets_tests.market.helpers import MESSY_TICKERS, messy_bars, write_bars

TICKERS = MESSY_TICKERS
MARKET = synthetic_market(SyntheticConfig(tickers=TICKERS, start="2026-01-02", end="2026-06-30"))
EARLIEST, LATEST = date(2026, 1, 2), date(2026, 12, 1)


def user_bars() -> pd.DataFrame:
    return messy_bars(MARKET)


@pytest.fixture
def source(tmp_path: Path) -> FileSource:
    write_bars(user_bars(), tmp_path / "files")
    return FileSource(tmp_path / "files")


def test_the_span_given_is_snapped_to_sessions(source: FileSource) -> None:
    span = import_span(source, TICKERS, date(2026, 2, 28), date(2026, 3, 8), EARLIEST, LATEST)
    assert (span.first, span.last) == (pd.Timestamp("2026-03-02"), pd.Timestamp("2026-03-06"))
    assert span.notes == () and len(span.sessions) == 5


def test_without_a_span_the_files_coverage_is_imported(source: FileSource) -> None:
    span = import_span(source, TICKERS, None, None, EARLIEST, LATEST)
    assert (span.first, span.last) == (pd.Timestamp("2026-03-02"), pd.Timestamp("2026-03-13"))
    assert span.notes == ("source files holds bars from 2026-03-02 to 2026-03-13",)


def test_sessions_that_may_not_be_stored_are_cut_with_a_note(source: FileSource) -> None:
    span = import_span(source, TICKERS, None, None, date(2026, 3, 9), date(2026, 3, 11))
    assert (span.first, span.last) == (pd.Timestamp("2026-03-09"), pd.Timestamp("2026-03-11"))
    assert any("QUANT_PARTITIONS_START" in n for n in span.notes)
    assert any("after 2026-03-11" in n for n in span.notes)
    with pytest.raises(HistoryImportError, match="no trading session to import"):
        import_span(source, TICKERS, date(2025, 1, 1), date(2025, 2, 1), EARLIEST, LATEST)


def test_a_source_that_cannot_tell_its_coverage_needs_the_span() -> None:
    with pytest.raises(HistoryImportError, match="give --start and --end"):
        import_span(MARKET, TICKERS, None, None, EARLIEST, LATEST)
    span = import_span(MARKET, TICKERS, date(2026, 3, 2), date(2026, 3, 2), EARLIEST, LATEST)
    assert span.first == span.last == pd.Timestamp("2026-03-02")


def test_files_without_a_bar_of_the_tickers_are_refused(source: FileSource) -> None:
    with pytest.raises(HistoryImportError, match="holds no bar of AMZN"):
        import_span(source, ["AMZN"], None, None, EARLIEST, LATEST)


def test_the_report_is_what_is_stored_and_a_reimport_leaves_it_unchanged(
    source: FileSource, engine: Engine
) -> None:
    span = import_span(source, (*TICKERS, "AMZN"), None, None, EARLIEST, LATEST)
    for ticker in (*TICKERS, "AMZN"):
        ingest_sessions(source, engine, ticker, list(span.sessions))
    report = {r.ticker: r for r in import_report(engine, (*TICKERS, "AMZN"), span)}
    bars = user_bars()
    regular = bars[calendar.in_regular_session(bars["ts"]) & (bars["ts"].dt.second == 0)]
    for ticker in TICKERS:
        own = regular[regular["ticker"] == ticker]
        per_day = calendar.session_labels(own["ts"]).value_counts()
        r = report[ticker]
        assert r.rows == len(own) and r.coverage.sessions == 10
        assert (r.first_ts, r.last_ts) == (own["ts"].min(), own["ts"].max())
        assert r.typical_share == pytest.approx(float(np.median(per_day / 390)))
    assert report["AAPL"].extended_hours == 2
    assert report["AAPL"].quarantined == {"not_minute_aligned": 1}
    assert report["MSFT"].quarantined == {} and report["MSFT"].extended_hours == 0
    assert [h.describe() for h in report["MSFT"].coverage.holes] == [
        "2026-03-05…2026-03-06 (2 sessions)"
    ]
    assert report["MSFT"].coverage.truncated == (pd.Timestamp("2026-03-10"),)
    assert 0.2 < report["NVDA"].typical_share < 0.3
    assert report["AMZN"].rows == 0 and report["AMZN"].first_ts is None
    assert np.isnan(report["AMZN"].typical_share)
    assert report["AMZN"].to_dict()["typical_share"] is None

    for ticker in TICKERS:
        assert ingest_sessions(source, engine, ticker, list(span.sessions)).rows_changed == 0
    again = {r.ticker: r.to_dict() for r in import_report(engine, (*TICKERS, "AMZN"), span)}
    assert again == {t: r.to_dict() for t, r in report.items()}
