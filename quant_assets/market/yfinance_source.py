"""1-minute bars and corporate actions from Yahoo Finance, through yfinance."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pandas as pd
from tenacity import (
    before_sleep_log,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from quant_assets.market import calendar
from quant_assets.market.frames import BAR_COLUMNS, empty_bars, empty_dividends, empty_splits
from quant_assets.market.sources import SourceRangeError, require_utc_range
from quant_assets.market.vendor import (
    MinIntervalLimiter,
    ledger_frame,
    merge_bar_chunks,
    range_chunks,
    regular_session_bars,
)

log = logging.getLogger(__name__)


def _yf_rate_limit_error() -> type[Exception]:
    from yfinance.exceptions import YFRateLimitError

    return YFRateLimitError


Downloader = Callable[..., pd.DataFrame | None]


class YFinanceSource:
    """1-minute bars and corporate actions from Yahoo Finance through yfinance.

    Yahoo serves 1-minute bars for at most 7 days per request and about the last 30 days:
    longer ranges are split into ≤ 7-day requests, older ones raise ``SourceRangeError``.
    Calls are spaced ``min_interval_s`` apart and a ``YFRateLimitError`` is retried with
    exponential backoff. Intraday bars from Yahoo are not dividend-adjusted; we ask for
    ``auto_adjust=False`` so the raw prices are stored and adjusted by our own ledger.
    """

    name = "yfinance"
    MAX_DAYS_PER_REQUEST = 7
    HISTORY_DAYS = 29  # Yahoo's limit is "the last 30 days"; keep a day's margin.

    def __init__(
        self,
        min_interval_s: float = 1.0,
        downloader: Downloader | None = None,
        ticker_factory: Callable[[str], object] | None = None,
        now: Callable[[], pd.Timestamp] = lambda: pd.Timestamp.now(tz="UTC"),
    ) -> None:
        self._limiter = MinIntervalLimiter(min_interval_s)
        self._downloader = downloader
        self._ticker_factory = ticker_factory
        self._now = now

    def get_bars(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Raw regular-session bars with ``start <= ts < end``, in ≤ 7-day requests."""
        start, end = require_utc_range(start, end)
        oldest = self._now() - pd.Timedelta(days=self.HISTORY_DAYS)
        if start < oldest:
            raise SourceRangeError(
                f"yfinance serves 1-minute bars for about the last 30 days only: "
                f"{ticker} from {start} is older than {oldest.floor('min')}"
            )
        frames = [
            normalize_yfinance_bars(self._download(ticker, chunk_start, chunk_end), ticker)
            for chunk_start, chunk_end in range_chunks(start, end, self.MAX_DAYS_PER_REQUEST)
        ]
        return merge_bar_chunks(frames, start, end)

    @retry(
        retry=retry_if_exception_type(_yf_rate_limit_error()),
        wait=wait_exponential_jitter(multiplier=5, max=120),
        stop=stop_after_attempt(5),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    )
    def _download(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame | None:
        self._limiter.wait()
        download = self._downloader or _yfinance_download
        return download(
            ticker,
            start=start,
            end=end,
            interval="1m",
            auto_adjust=False,
            actions=False,
            prepost=False,
            progress=False,
            threads=False,
        )

    def _ticker(self, ticker: str) -> object:
        if self._ticker_factory is not None:
            return self._ticker_factory(ticker)
        import yfinance as yf

        return yf.Ticker(ticker)

    def get_splits(
        self, ticker: str, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """Splits from ``yf.Ticker(t).splits`` (ratio = new shares per old share)."""
        self._limiter.wait()
        series = self._ticker(ticker).splits  # type: ignore[attr-defined]
        return _ledger(series, ticker, "ratio", start, end, empty_splits())

    def get_dividends(
        self, ticker: str, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """Cash dividends from ``yf.Ticker(t).dividends`` (amount per share)."""
        self._limiter.wait()
        series = self._ticker(ticker).dividends  # type: ignore[attr-defined]
        return _ledger(series, ticker, "amount", start, end, empty_dividends())


def _yfinance_download(ticker: str, **kwargs: object) -> pd.DataFrame | None:
    import yfinance as yf

    return yf.download(ticker, **kwargs)  # type: ignore[arg-type]


def normalize_yfinance_bars(raw: pd.DataFrame | None, ticker: str) -> pd.DataFrame:
    """Turn a yfinance frame (flat or (Price, Ticker) MultiIndex columns) into canonical bars.

    Rows with no price (yfinance pads missing minutes with NaN when ``keepna``) are dropped;
    pre/post-market rows are dropped so only regular-session minutes remain.
    """
    if raw is None or raw.empty:
        return empty_bars()
    frame = raw.copy()
    if isinstance(frame.columns, pd.MultiIndex):
        level = _ticker_level(frame.columns, ticker)
        frame = frame.xs(ticker, axis=1, level=level) if level is not None else frame
        if isinstance(frame.columns, pd.MultiIndex):
            frame.columns = frame.columns.get_level_values(0)
    frame.columns = [str(c).lower().replace(" ", "_") for c in frame.columns]
    missing = {"open", "high", "low", "close", "volume"} - set(frame.columns)
    if missing:
        raise ValueError(f"yfinance frame for {ticker} lacks columns {sorted(missing)}")
    index = pd.DatetimeIndex(frame.index)
    if index.tz is None:
        raise ValueError(f"yfinance frame for {ticker} has a tz-naive index")
    frame = frame.assign(ts=index.tz_convert("UTC"), ticker=ticker).reset_index(drop=True)
    return regular_session_bars(frame[list(BAR_COLUMNS)])


def _ticker_level(columns: pd.MultiIndex, ticker: str) -> int | None:
    for level in range(columns.nlevels):
        if ticker in columns.get_level_values(level):
            return level
    return None


def _ledger(
    series: pd.Series,
    ticker: str,
    value_name: str,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
    empty: pd.DataFrame,
) -> pd.DataFrame:
    if series is None or len(series) == 0:
        return empty
    index = pd.DatetimeIndex(series.index)
    if index.tz is not None:
        index = index.tz_convert(calendar.MARKET_TZ).tz_localize(None)
    values = pd.to_numeric(series.to_numpy(), errors="raise").astype("float64")
    actual = values != 0  # yfinance reports "no action" as 0
    return ledger_frame(ticker, list(index[actual]), list(values[actual]), value_name, start, end)
