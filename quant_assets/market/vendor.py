"""What the vendor-API sources share: call spacing, retries, secret redaction and frame builders.

Used by ``yfinance_source``, ``alpaca_source`` and ``massive_source``:

* ``MinIntervalLimiter`` spaces a source's calls;
* ``call_with_retry`` retries transient failures with exponential backoff (tenacity), a bounded
  number of attempts, and then raises ``SourceRequestError`` with a message that names the call
  but carries no secret (and no SDK exception as cause or context, whose URL or request could);
* ``Redactor`` removes API keys from any text we log or raise;
* ``range_chunks``, ``regular_session_bars``, ``merge_bar_chunks`` and ``ledger_frame`` cut a
  range into requests and build the canonical frames of ``frames.py`` from what comes back;
* ``require_sdk`` names the optional extra to install when a vendor SDK is missing.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from datetime import date

import numpy as np
import pandas as pd
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from quant_assets.market import calendar
from quant_assets.market.frames import PRICE_COLUMNS, as_bar_dtypes
from quant_assets.market.sources import SourceRequestError

log = logging.getLogger(__name__)

# An API key passed as a query parameter (``?apiKey=…``, ``&api_key=…``): never shown.
_KEY_PARAMETER = re.compile(r"(?i)\b((?:api|secret)[_-]?key|access[_-]?token)=[^&\s'\"]+")


class MinIntervalLimiter:
    """Spaces calls at least ``interval_s`` apart across threads.

    Hand-written (a dozen lines) rather than a token-bucket dependency: one source, one rate.
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._next_allowed = 0.0

    def wait(self) -> None:
        """Block until the next call is allowed, then reserve the slot after it."""
        with self._lock:
            now = self._clock()
            delay = self._next_allowed - now
            if delay > 0:
                time.sleep(delay)
                now += delay
            self._next_allowed = now + self.interval_s


class Redactor:
    """Removes the given secrets, and any API-key query parameter, from text.

    It holds the secrets so that it can find them; its repr shows none of them.
    """

    def __init__(self, *secrets: str) -> None:
        # Longest first, so a key that contains another is replaced whole.
        self._secrets = tuple(sorted((s for s in secrets if s), key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _KEY_PARAMETER.sub(r"\1=***", text)

    def __repr__(self) -> str:
        return "Redactor(***)"


def require_sdk(module: str, extra: str) -> None:
    """Raise a clear ImportError naming the extra to install when ``module`` is missing."""
    if importlib.util.find_spec(module) is None:
        raise ImportError(
            f"the {extra} source needs its SDK (module {module!r} is not installed): "
            f"pip install 'quant_assets[{extra}]'"
        )


def call_with_retry[T](
    call: Callable[[], T],
    *,
    what: str,
    is_transient: Callable[[BaseException], bool],
    vendor_errors: tuple[type[BaseException], ...],
    redact: Redactor,
    attempts: int,
    max_wait_s: float = 60.0,
) -> T:
    """``call()``, retried with exponential backoff while it fails transiently.

    A vendor error that is not transient fails at once; a transient one fails after
    ``attempts`` tries. Either way the caller gets ``SourceRequestError("{what} failed …")``
    with the vendor's message redacted; other exceptions (our own bugs) pass unchanged.
    """
    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential_jitter(initial=1, max=max_wait_s),
        stop=stop_after_attempt(attempts),
        before_sleep=_warn_before_retry(what, redact),
        reraise=True,
    )
    try:
        return retrying(call)
    except vendor_errors as err:
        tries = retrying.statistics.get("attempt_number", 1)
        reason = redact(f"{type(err).__name__}: {err}")
    # Raised outside the except block so the SDK's exception, whose URL or request object may
    # hold a key, is neither the cause nor the context of ours (both end up in run logs).
    raise SourceRequestError(f"{what} failed after {tries} attempt(s): {reason}")


def _warn_before_retry(what: str, redact: Redactor) -> Callable[[RetryCallState], None]:
    """tenacity's ``before_sleep`` hook: one redacted warning per retry (not before_sleep_log,
    which would log the SDK's exception text as it is)."""

    def warn(state: RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome is not None else None
        pause = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "%s: attempt %d failed (%s); retrying in %.1f s",
            what,
            state.attempt_number,
            redact(f"{type(err).__name__}: {err}"),
            pause,
        )

    return warn


def range_chunks(
    start: pd.Timestamp, end: pd.Timestamp, max_days: float
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """[start, end) cut into consecutive half-open pieces of at most ``max_days`` days."""
    step = pd.Timedelta(days=max_days)
    chunks = []
    chunk_start = start
    while chunk_start < end:
        chunk_end = min(chunk_start + step, end)
        chunks.append((chunk_start, chunk_end))
        chunk_start = chunk_end
    return chunks


def regular_session_bars(frame: pd.DataFrame) -> pd.DataFrame:
    """Canonical bars from a frame with BAR_COLUMNS (``ts`` tz-aware), regular session only.

    Rows without a time or a price are dropped; a missing volume counts as 0; float volumes are
    rounded to whole shares (vendors send integral floats; a fractional-share remainder is noise).
    """
    frame = frame.dropna(subset=["ts", *PRICE_COLUMNS])
    volume = pd.to_numeric(frame["volume"], errors="coerce").fillna(0)
    bars = as_bar_dtypes(frame.assign(volume=np.rint(volume.to_numpy(dtype="float64"))))
    return bars[calendar.in_regular_session(bars["ts"])].reset_index(drop=True)


def merge_bar_chunks(
    frames: Sequence[pd.DataFrame], start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """Chunks of canonical bars as one frame: ``start <= ts < end``, one row per (ticker, ts)."""
    bars = pd.concat(frames, ignore_index=True)
    bars = bars[(bars["ts"] >= start) & (bars["ts"] < end)]
    bars = bars.drop_duplicates(["ticker", "ts"], keep="last")
    return bars.sort_values("ts", kind="stable").reset_index(drop=True)


def ledger_frame(
    ticker: str,
    ex_dates: Sequence[date | pd.Timestamp | str],
    values: Sequence[float | None],
    value_name: str,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
) -> pd.DataFrame:
    """A split (``ratio``) or dividend (``amount``) ledger with ex_date in [start, end] when given.

    ``ex_dates`` are New York dates (tz-naive); a missing value stays NaN for the ledger's intake
    to refuse with its reason, rather than vanishing here.
    """
    ledger = pd.DataFrame(
        {
            "ticker": pd.Series([ticker] * len(ex_dates), dtype="string"),
            "ex_date": pd.to_datetime(pd.Series(ex_dates, dtype=object))
            .dt.normalize()
            .astype("datetime64[ns]"),
            value_name: np.asarray(values, dtype="float64"),
        }
    )
    if start is not None:
        ledger = ledger[ledger["ex_date"] >= calendar.to_session_label(start)]
    if end is not None:
        ledger = ledger[ledger["ex_date"] <= calendar.to_session_label(end)]
    return ledger.sort_values("ex_date", kind="stable").reset_index(drop=True)
