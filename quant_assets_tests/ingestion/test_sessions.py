"""The batch path: whatever the source answers is stored or quarantined, never lost unseen."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import Engine, text

from quant_assets.ingestion.sessions import ingest_sessions
from quant_assets.market.bar_validation import BarValidationError
from quant_assets.market.synthetic import SyntheticMarket
from quant_assets.storage.bars import read_bars
from quant_assets_tests.ingestion.helpers import DAY, market_resource, ny


class Overfull:
    """Answers with the asked ticker's bars plus another ticker's and the next day's."""

    def __init__(self, inner: SyntheticMarket) -> None:
        self.inner = inner
        self.name = "overfull"

    def get_bars(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        own = self.inner.get_bars(ticker, start, end)
        other = self.inner.get_bars("MSFT", start, end).head(5)
        later = self.inner.get_bars(
            ticker, start + pd.Timedelta(days=1), end + pd.Timedelta(days=1)
        ).head(7)
        return pd.concat([own, other, later], ignore_index=True)


def quarantined(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT reason, COUNT(*) FROM bar_quarantine GROUP BY reason"))
        return {str(r): int(n) for r, n in rows}


def test_rows_not_asked_for_are_quarantined_not_stored_or_dropped(engine: Engine) -> None:
    market = market_resource().get_source()
    result = ingest_sessions(Overfull(market), engine, "AAPL", [pd.Timestamp(DAY)])
    assert result.quarantine_reasons == {"unknown_ticker": 5, "outside_request": 7}
    assert quarantined(engine) == {"unknown_ticker": 5, "outside_request": 7}
    open_, close = ny(DAY, "09:30"), ny(DAY, "16:00")
    pd.testing.assert_frame_equal(
        read_bars(engine, ["AAPL"], open_, close), market.get_bars("AAPL", open_, close)
    )
    assert read_bars(engine, ["MSFT"], open_, close).empty


def test_separate_days_are_fetched_separately(engine: Engine) -> None:
    market = market_resource().get_source()
    asked: list[tuple[pd.Timestamp, pd.Timestamp]] = []

    class Recording:
        name = "recording"

        def get_bars(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
            asked.append((start, end))
            return market.get_bars(ticker, start, end)

    days = [pd.Timestamp("2026-03-02"), pd.Timestamp("2026-03-03"), pd.Timestamp("2026-03-05")]
    result = ingest_sessions(Recording(), engine, "AAPL", days)
    assert len(asked) == 2 and result.quarantine_reasons == {}
    assert {r.day for r in result.sessions if r.rows} == set(days)


def test_an_answer_that_is_not_a_frame_is_refused_clearly(engine: Engine) -> None:
    class Broken:
        name = "broken"

        def get_bars(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> object:
            return {"close": [1.0]}

    with pytest.raises(BarValidationError, match="expected a DataFrame, got dict"):
        ingest_sessions(Broken(), engine, "AAPL", [pd.Timestamp(DAY)])  # type: ignore[arg-type]
