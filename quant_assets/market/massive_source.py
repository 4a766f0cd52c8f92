"""1-minute bars and corporate actions from Massive (formerly Polygon.io), through ``massive``.

What it serves: raw (``adjusted=False``, our own ledger adjusts) 1-minute aggregates, regular
session only (Massive also sends pre- and post-market minutes, 04:00–20:00 New York, which are
dropped), forward and reverse splits from ``/stocks/v1/splits`` (``list_stocks_splits``) and
cash dividends from ``/stocks/v1/dividends`` (``list_stocks_dividends``); Massive deprecated the
older ``/v3/reference`` endpoints (``list_splits`` / ``list_dividends``) in February 2026. Stock
dividends are not served, nor dividends paid in a currency other than USD (logged, skipped). A
key's plan sets how far back it reaches (the basic plan: 2 years) and how often it may call (the
basic plan: 5 calls a minute, hence the default spacing of 12 s; paid plans can lower it).

Paging and retries, as massive 2.9.1 does them (``massive/rest/base.py``): every ``list_*`` is
a lazy iterator (``BaseClient._paginate_iter``) that requests the next page from ``next_url``
while it is consumed, so here a request is made, read and retried as one ``list(...)``. Bars
are asked for in ``MAX_DAYS_PER_REQUEST`` chunks so that a failure repeats one chunk, not a
year. The SDK's urllib3 pool retries 413/429/499/5xx answers and connection errors 3 times
(0.1 s exponential backoff, honouring ``Retry-After``) and then raises urllib3's
``MaxRetryError``; that and the other urllib3 transport errors are retried here with
exponential backoff, ``max_attempts`` times, then raised as ``SourceRequestError``. Any other
non-200 answer is ``massive.exceptions.BadResponse`` (its body) and fails at once. An answer
that is not JSON is logged by the SDK and read as empty.

Secrets: in 2.9.1 the key travels in the ``Authorization: Bearer`` header only, no code path
puts it in a URL; a ``next_url`` is followed as the server sends it, so every message this
source logs or raises is also scrubbed of ``apiKey=`` parameters. The source keeps the SDK
client and a ``Redactor``, no key attribute; its repr shows no key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

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
    from massive import RESTClient
    from massive.rest.models import Agg

log = logging.getLogger(__name__)

SPLIT_TYPES: tuple[str, ...] = ("forward_split", "reverse_split")
PAGE_LIMIT = 5000  # the most the corporate-action endpoints give per page


class MassiveSource:
    """1-minute bars (raw, regular session) and splits / cash dividends from Massive."""

    name = "massive"
    # ≤ 22 sessions × 960 extended-hours minutes: one chunk usually fits one 50,000-bar page.
    MAX_DAYS_PER_REQUEST = 30
    AGGS_LIMIT = 50_000  # the most base aggregates one aggregates request may cover

    def __init__(
        self,
        api_key: str,
        *,
        min_interval_s: float = 12.0,
        max_attempts: int = 5,
        client: RESTClient | None = None,
    ) -> None:
        require_sdk("massive", "massive")
        if not api_key:
            raise ValueError("the Massive source needs an API key")
        from massive import RESTClient

        self._client = client or RESTClient(api_key=api_key)
        self._redact = Redactor(api_key)
        self._limiter = MinIntervalLimiter(min_interval_s)
        self._max_attempts = max_attempts

    def __repr__(self) -> str:
        return "MassiveSource()"

    def get_bars(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Raw regular-session bars with ``start <= ts < end``, in ≤ 30-day requests."""
        start, end = require_utc_range(start, end)
        frames = [
            self._bars_chunk(ticker, chunk_start, chunk_end)
            for chunk_start, chunk_end in range_chunks(start, end, self.MAX_DAYS_PER_REQUEST)
        ]
        return merge_bar_chunks(frames, start, end)

    def _bars_chunk(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        # Epoch milliseconds; Massive's ``to`` is inclusive, so stop 1 ms before ``end``.
        from_ms = start.value // 1_000_000
        to_ms = end.value // 1_000_000 - 1
        what = f"massive bars of {ticker} {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
        aggs = self._read(
            what,
            lambda: self._client.list_aggs(
                ticker,
                1,
                "minute",
                from_ms,
                to_ms,
                adjusted=False,
                sort="asc",
                limit=self.AGGS_LIMIT,
            ),
        )
        return massive_bars_frame(aggs, ticker)

    def get_splits(
        self, ticker: str, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """Forward and reverse splits (ratio = split_to / split_from: 2.0 for a 2-for-1 split)."""
        found = self._read(
            f"massive splits of {ticker}",
            lambda: self._client.list_stocks_splits(
                ticker=ticker,
                execution_date_gte=_iso_date(start),
                execution_date_lte=_iso_date(end),
                limit=PAGE_LIMIT,
            ),
        )
        splits = [s for s in found if s.adjustment_type in SPLIT_TYPES and s.ticker == ticker]
        ratios = [
            s.split_to / s.split_from if s.split_to and s.split_from else None for s in splits
        ]
        dates = [s.execution_date for s in splits]
        return ledger_frame(ticker, dates, ratios, "ratio", start, end)

    def get_dividends(
        self, ticker: str, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """Cash dividends in USD, of every distribution type (amount = ``cash_amount``)."""
        found = self._read(
            f"massive dividends of {ticker}",
            lambda: self._client.list_stocks_dividends(
                ticker=ticker,
                ex_dividend_date_gte=_iso_date(start),
                ex_dividend_date_lte=_iso_date(end),
                limit=PAGE_LIMIT,
            ),
        )
        cash = [d for d in found if d.ticker == ticker and _in_usd(d)]
        dates = [d.ex_dividend_date for d in cash]
        return ledger_frame(ticker, dates, [d.cash_amount for d in cash], "amount", start, end)

    def _read(self, what: str, pages: Callable[[], Iterable[Any]]) -> list[Any]:
        """Every item of a paged SDK call, spaced by the limiter and retried as one read."""

        def attempt() -> list[Any]:
            self._limiter.wait()
            return list(pages())  # the requests happen here, page by page

        return call_with_retry(
            attempt,
            what=what,
            is_transient=_is_transient,
            vendor_errors=_vendor_errors(),
            redact=self._redact,
            attempts=self._max_attempts,
        )


def massive_bars_frame(aggs: Sequence[Agg], ticker: str) -> pd.DataFrame:
    """Canonical regular-session bars from massive ``Agg`` models (``timestamp``: ms, bar start)."""
    frame = pd.DataFrame(
        {
            "ticker": [ticker] * len(aggs),
            "ts": pd.to_datetime([a.timestamp for a in aggs], unit="ms", utc=True),
            "open": [a.open for a in aggs],
            "high": [a.high for a in aggs],
            "low": [a.low for a in aggs],
            "close": [a.close for a in aggs],
            "volume": [a.volume for a in aggs],
        }
    )
    return regular_session_bars(frame)


def _iso_date(day: pd.Timestamp | None) -> str | None:
    """A YYYY-MM-DD filter value (a datetime would be sent as epoch nanoseconds by the SDK)."""
    return None if day is None else calendar.to_session_label(day).strftime("%Y-%m-%d")


def _in_usd(dividend: Any) -> bool:
    if dividend.currency in (None, "USD"):
        return True
    log.warning(
        "massive: %s dividend ex %s paid in %s skipped (prices are in USD)",
        dividend.ticker,
        dividend.ex_dividend_date,
        dividend.currency,
    )
    return False


def _vendor_errors() -> tuple[type[BaseException], ...]:
    from massive.exceptions import BadResponse
    from urllib3.exceptions import HTTPError

    return (BadResponse, HTTPError)


def _is_transient(err: BaseException) -> bool:
    """A transport failure (urllib3 gave up retrying 429/5xx or the connection): try again.

    ``BadResponse`` is every other non-200 answer (bad key, plan limits, bad request).
    """
    from urllib3.exceptions import HTTPError

    return isinstance(err, HTTPError)
