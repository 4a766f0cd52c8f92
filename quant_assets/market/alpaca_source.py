"""1-minute bars and corporate actions from Alpaca's market-data API, through alpaca-py.

What it serves: raw (``Adjustment.RAW``, our own ledger adjusts) 1-minute bars of the ``iex``
feed (the free plan: trades on IEX only, a few percent of consolidated volume) or the ``sip``
feed (every exchange; a paid plan, and the free plan refuses its latest 15 minutes), regular
session only: Alpaca also sends extended-hours bars (04:00–20:00 New York), which are dropped.
Forward and reverse splits and cash dividends come from the corporate-actions endpoint
(``CorporateActionsClient``); stock dividends, spin-offs and mergers are not served.

Paging and retries, as alpaca-py 0.44 does them (``alpaca/common/rest.py``):
``RESTClient._get_marketdata`` follows ``next_page_token`` until an answer has none and joins
every page, so one ``get_stock_bars`` / ``get_corporate_actions`` call returns the whole range.
Bars are still asked for in ``MAX_DAYS_PER_REQUEST`` chunks so that a failure repeats one
chunk, not a year. ``RESTClient._request`` retries HTTP 429 and 504 three times, 3 s apart, by
itself; what still fails (an ``APIError`` with 429 or 5xx, a connection error or timeout from
requests) is retried here with exponential backoff, ``max_attempts`` times, then raised as
``SourceRequestError``; other API errors (401, 403, 422) fail at once. alpaca-py sets no HTTP
timeout on its requests session.

Corporate actions: Alpaca's ``start`` / ``end`` select on ``process_date`` (when Alpaca books the
action; a dividend's is near its payable date), not on the ex-date, so the request is widened by
``PROCESS_DATE_MARGIN`` on both sides and the rows are filtered on ex-date here.

Secrets: the keys travel in headers (``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY``), never in a
URL. The source keeps the SDK clients and a ``Redactor``, no key attribute; its repr, its logs
and its errors show no key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from quant_assets.market import calendar
from quant_assets.market.sources import require_utc_range
from quant_assets.market.vendor import (
    MinIntervalLimiter,
    Redactor,
    call_with_retry,
    ledger_frame,
    merge_bar_chunks,
    range_chunks,
    regular_session_bars,
    require_sdk,
)

if TYPE_CHECKING:
    from alpaca.data.historical import StockHistoricalDataClient
    from alpaca.data.historical.corporate_actions import CorporateActionsClient
    from alpaca.data.models import Bar

AlpacaFeed = Literal["iex", "sip"]
FEEDS: tuple[str, ...] = ("iex", "sip")


class AlpacaSource:
    """1-minute bars (raw, regular session) and splits / cash dividends from Alpaca."""

    name = "alpaca"
    # ≤ 8 sessions × 960 extended-hours minutes: one chunk usually fits one 10,000-bar page.
    MAX_DAYS_PER_REQUEST = 10
    # "All history" of corporate actions: Alpaca's bars start in 2016, and an action before
    # the first stored bar adjusts nothing.
    HISTORY_START = date(2015, 1, 1)
    PROCESS_DATE_MARGIN = pd.Timedelta(days=90)

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        feed: AlpacaFeed = "iex",
        *,
        min_interval_s: float = 0.3,  # the free plan allows 200 calls a minute
        max_attempts: int = 5,
        bars_client: StockHistoricalDataClient | None = None,
        actions_client: CorporateActionsClient | None = None,
    ) -> None:
        require_sdk("alpaca", "alpaca")
        if feed not in FEEDS:
            raise ValueError(f"unknown Alpaca feed {feed!r}; use 'iex' or 'sip'")
        if not api_key or not secret_key:
            raise ValueError("the Alpaca source needs an API key and a secret key")
        from alpaca.data.historical import StockHistoricalDataClient
        from alpaca.data.historical.corporate_actions import CorporateActionsClient

        self.feed = feed
        self._bars_client = bars_client or StockHistoricalDataClient(api_key, secret_key)
        self._actions_client = actions_client or CorporateActionsClient(api_key, secret_key)
        self._redact = Redactor(api_key, secret_key)
        self._limiter = MinIntervalLimiter(min_interval_s)
        self._max_attempts = max_attempts

    def __repr__(self) -> str:
        return f"AlpacaSource(feed={self.feed!r})"

    def get_bars(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Raw regular-session bars with ``start <= ts < end``, in ≤ 10-day requests."""
        start, end = require_utc_range(start, end)
        frames = [
            self._bars_chunk(ticker, chunk_start, chunk_end)
            for chunk_start, chunk_end in range_chunks(start, end, self.MAX_DAYS_PER_REQUEST)
        ]
        return merge_bar_chunks(frames, start, end)

    def _bars_chunk(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        from alpaca.data.enums import Adjustment, DataFeed
        from alpaca.data.requests import StockBarsRequest
        from alpaca.data.timeframe import TimeFrame

        request = StockBarsRequest(
            symbol_or_symbols=ticker,
            timeframe=TimeFrame.Minute,
            start=start.to_pydatetime(),
            end=end.to_pydatetime(),
            adjustment=Adjustment.RAW,
            feed=DataFeed(self.feed),
        )
        what = f"alpaca bars of {ticker} {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
        barset = self._call(what, lambda: self._bars_client.get_stock_bars(request))
        return alpaca_bars_frame(barset.data.get(ticker, []), ticker)  # type: ignore[union-attr]

    def get_splits(
        self, ticker: str, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """Forward and reverse splits (ratio = new_rate / old_rate: 2.0 for a 2-for-1 split)."""
        from alpaca.data.enums import CorporateActionsType

        kinds = [CorporateActionsType.FORWARD_SPLIT, CorporateActionsType.REVERSE_SPLIT]
        actions = self._corporate_actions(ticker, kinds, start, end)
        splits = [a for key in ("forward_splits", "reverse_splits") for a in actions.get(key, [])]
        ratios = [a.new_rate / a.old_rate if a.old_rate else None for a in splits]
        return ledger_frame(ticker, [a.ex_date for a in splits], ratios, "ratio", start, end)

    def get_dividends(
        self, ticker: str, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """Cash dividends, regular and special (amount = ``rate``, cash per share)."""
        from alpaca.data.enums import CorporateActionsType

        actions = self._corporate_actions(ticker, [CorporateActionsType.CASH_DIVIDEND], start, end)
        cash = actions.get("cash_dividends", [])
        amounts = [a.rate for a in cash]
        return ledger_frame(ticker, [a.ex_date for a in cash], amounts, "amount", start, end)

    def _corporate_actions(
        self,
        ticker: str,
        kinds: Sequence[Any],
        start: pd.Timestamp | None,
        end: pd.Timestamp | None,
    ) -> dict[str, list[Any]]:
        """The actions of ``kinds`` whose process date is near [start, end], keyed by kind."""
        from alpaca.data.requests import CorporateActionsRequest

        first, last = self._process_window(start, end)
        request = CorporateActionsRequest(
            symbols=[ticker],
            types=list(kinds),
            start=first,
            end=last,
            limit=None,  # the default (1000) caps the total, not the page: read every page
        )
        what = f"alpaca corporate actions of {ticker} processed {first} to {last}"
        found = self._call(what, lambda: self._actions_client.get_corporate_actions(request))
        return {
            key: [a for a in actions if getattr(a, "symbol", None) == ticker]
            for key, actions in found.data.items()  # type: ignore[union-attr]
        }

    def _process_window(
        self, start: pd.Timestamp | None, end: pd.Timestamp | None
    ) -> tuple[date, date]:
        """The process dates to ask for: [start, end] (all history, today) widened by the margin."""
        first = calendar.to_session_label(self.HISTORY_START if start is None else start)
        last = calendar.to_session_label(pd.Timestamp.now(tz="UTC") if end is None else end)
        margin = self.PROCESS_DATE_MARGIN
        return (first - margin).date(), (last + margin).date()

    def _call[T](self, what: str, call: Callable[[], T]) -> T:
        """One SDK call, spaced by the limiter and retried while it fails transiently."""

        def attempt() -> T:
            self._limiter.wait()
            return call()

        return call_with_retry(
            attempt,
            what=what,
            is_transient=_is_transient,
            vendor_errors=_vendor_errors(),
            redact=self._redact,
            attempts=self._max_attempts,
        )


def alpaca_bars_frame(bars: Sequence[Bar], ticker: str) -> pd.DataFrame:
    """Canonical regular-session bars from alpaca-py ``Bar`` models (``timestamp`` = bar start)."""
    frame = pd.DataFrame(
        {
            "ticker": [ticker] * len(bars),
            "ts": pd.to_datetime([b.timestamp for b in bars], utc=True),
            "open": [b.open for b in bars],
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
            "volume": [b.volume for b in bars],
        }
    )
    return regular_session_bars(frame)


def _vendor_errors() -> tuple[type[BaseException], ...]:
    import requests
    from alpaca.common.exceptions import APIError

    return (APIError, requests.RequestException)


def _is_transient(err: BaseException) -> bool:
    """A 429 or 5xx the SDK gave up on, or a network failure: worth another try."""
    import requests
    from alpaca.common.exceptions import APIError

    if isinstance(err, APIError):
        status = err.status_code
        return status is not None and (status == 429 or status >= 500)
    network = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
    return isinstance(err, network)
