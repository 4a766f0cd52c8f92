"""MassiveSource offline: JSON pages fed to the massive SDK's own client through urllib3.

``urllib3.connectionpool.HTTPConnectionPool._make_request`` is replaced, so the SDK's request
building, ``next_url`` paging, urllib3's own retries and the SDK's model parsing all run as they
do against the real API; only the socket is missing.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import defaultdict
from collections.abc import Callable
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
import urllib3
from urllib3.connectionpool import HTTPConnectionPool

from quant_assets.market import calendar
from quant_assets.market.massive_source import MassiveSource
from quant_assets.market.sources import MarketSource, SourceRequestError

KEY = "mAsSiVeFaKeKey_0123456789abcdef"
BASE = "https://api.massive.com"
SPLITS = "/stocks/v1/splits"
DIVIDENDS = "/stocks/v1/dividends"
OPEN = pd.Timestamp("2024-01-03 14:30", tz="UTC")  # a Wednesday, a full session

Reply = tuple[int, object] | Exception | Callable[[str], tuple[int, object]]


class FakeMassiveHTTP:
    """Answers each path (aggregates: by prefix) from its queue; the last reply repeats."""

    def __init__(self) -> None:
        self.replies: dict[str, list[Reply]] = defaultdict(list)
        self.urls: list[str] = []
        self.headers: list[dict] = []

    def answer(self, path: str, *replies: Reply) -> None:
        """Answer ``path`` with these replies from now on, in order; the last one repeats."""
        self.replies[path] = list(replies)

    def make_request(self, url: str, headers: dict) -> urllib3.HTTPResponse:
        self.urls.append(url)
        self.headers.append(dict(headers))
        path = urlparse(url).path
        key = "aggs" if path.startswith("/v2/aggs/") else path
        queue = self.replies[key]
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(reply, Exception):
            raise reply
        status, body = reply(url) if callable(reply) else reply
        return urllib3.HTTPResponse(
            body=json.dumps(body).encode(),
            status=status,
            headers={"Content-Type": "application/json"},
            preload_content=True,
        )

    def params(self, index: int = -1) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlparse(self.urls[index]).query).items()}


@pytest.fixture
def http(monkeypatch: pytest.MonkeyPatch) -> FakeMassiveHTTP:
    fake = FakeMassiveHTTP()

    def make_request(_pool, _conn, _method, url, *_args, headers=None, **_kwargs):
        return fake.make_request(url, headers or {})

    monkeypatch.setattr(HTTPConnectionPool, "_make_request", make_request)
    return fake


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every sleep (urllib3's backoff, tenacity's), recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)
    return slept


def source(max_attempts: int = 3) -> MassiveSource:
    return MassiveSource(KEY, min_interval_s=0, max_attempts=max_attempts)


def agg_json(ts: pd.Timestamp, price: float = 50.0, volume: float = 1200.0) -> dict:
    """One aggregate as Massive's JSON has it (``t`` = bar start, epoch ms; ``v`` a float)."""
    ms = ts.value // 1_000_000
    return {"t": ms, "o": price, "h": price + 0.1, "l": price - 0.1, "c": price, "v": volume}


def aggs_page(ts: pd.DatetimeIndex, next_url: str | None = None) -> dict:
    page: dict = {"status": "OK", "resultsCount": len(ts), "results": [agg_json(t) for t in ts]}
    return page | ({"next_url": next_url} if next_url else {})


def minutes(start: str, end: str) -> pd.DatetimeIndex:
    return pd.date_range(start, end, freq="min", inclusive="left", tz="UTC")


def test_bars_are_raw_canonical_utc_bar_starts_of_the_regular_session(http, sleeps) -> None:
    # 13:00–21:00 UTC = 08:00–16:00 New York: Massive sends pre-market minutes too.
    http.answer("aggs", (200, aggs_page(minutes("2024-01-03 13:00", "2024-01-03 21:00"))))
    start, end = OPEN - pd.Timedelta(hours=2), OPEN + pd.Timedelta(hours=8)
    bars = source().get_bars("AAPL", start, end)
    assert list(bars.columns) == ["ticker", "ts", "open", "high", "low", "close", "volume"]
    assert str(bars["ts"].dtype) == "datetime64[ns, UTC]"
    assert bars["volume"].dtype == "int64" and bars["volume"].eq(1200).all()
    assert len(bars) == 390 and bars["ts"].iloc[0] == OPEN
    path = urlparse(http.urls[0]).path
    from_ms, to_ms = start.value // 1_000_000, end.value // 1_000_000 - 1
    assert path == f"/v2/aggs/ticker/AAPL/range/1/minute/{from_ms}/{to_ms}"
    assert http.params() == {"adjusted": "false", "sort": "asc", "limit": "50000"}
    assert isinstance(source(), MarketSource)


def test_an_injected_client_is_read_completely(sleeps) -> None:
    from massive.rest.models import Agg

    class Client:
        def list_aggs(self, ticker, multiplier, timespan, from_, to, **kwargs):
            self.args = (ticker, multiplier, timespan, kwargs)
            return (
                Agg.from_dict(agg_json(t)) for t in minutes("2024-01-03 14:30", "2024-01-03 14:40")
            )

    client = Client()
    src = MassiveSource(KEY, client=client, min_interval_s=0)  # type: ignore[arg-type]
    bars = src.get_bars("AAPL", OPEN, OPEN + pd.Timedelta(minutes=10))
    assert len(bars) == 10 and bars["ts"].iloc[0] == OPEN
    assert client.args[:3] == ("AAPL", 1, "minute") and client.args[3]["adjusted"] is False


def test_a_multi_page_answer_is_read_completely_without_duplicates(http, sleeps) -> None:
    day = minutes("2024-01-03 14:30", "2024-01-03 21:00")
    page2 = f"{BASE}/v2/aggs/ticker/AAPL/range/1/minute/1/2?cursor=c2"
    page3 = f"{BASE}/v2/aggs/ticker/AAPL/range/1/minute/1/2?cursor=c3"
    http.answer(
        "aggs",
        (200, aggs_page(day[:100], page2)),
        (200, aggs_page(day[100:250], page3)),
        (200, aggs_page(day[250:])),
    )
    bars = source().get_bars("AAPL", OPEN, OPEN + pd.Timedelta(hours=7))
    assert [http.params(i).get("cursor") for i in range(3)] == [None, "c2", "c3"]
    assert bars["ts"].tolist() == list(day)  # every bar once, in order


def chunk_answer(url: str) -> tuple[int, object]:
    """Regular-session aggregates for exactly the [from, to] (ms, inclusive) of the path."""
    from_ms, to_ms = (int(part) for part in urlparse(url).path.split("/")[-2:])
    start = pd.Timestamp(from_ms, unit="ms", tz="UTC")
    end = pd.Timestamp(to_ms + 1, unit="ms", tz="UTC")
    return 200, aggs_page(calendar.trading_minutes(start, end))


def test_a_long_range_is_split_into_chunks_of_at_most_thirty_days(http, sleeps) -> None:
    http.answer("aggs", chunk_answer)
    start, end = calendar.span_of_days("2024-01-02", "2024-03-29")
    bars = source().get_bars("MSFT", start, end)
    windows = [tuple(int(p) for p in urlparse(u).path.split("/")[-2:]) for u in http.urls]
    assert len(windows) == 3
    assert (
        windows[0][0] == start.value // 1_000_000 and windows[-1][1] == end.value // 1_000_000 - 1
    )
    assert all(to - from_ < 30 * 86_400_000 for from_, to in windows)
    assert all(windows[i][1] + 1 == windows[i + 1][0] for i in range(2))  # no gap, no overlap
    assert bars["ts"].tolist() == list(calendar.trading_minutes(start, end))
    assert bars["ticker"].eq("MSFT").all()


def test_429_beyond_urllib3s_retries_is_retried_with_backoff(http, sleeps, caplog) -> None:
    # The SDK's urllib3 pool retries a 429 three times (4 requests), then raises MaxRetryError:
    # the source retries the call, and the 6th request succeeds.
    limited = (429, {"status": "ERROR", "error": "too many requests"})
    ok = (200, aggs_page(minutes("2024-01-03 14:30", "2024-01-03 14:40")))
    http.answer("aggs", *[limited] * 5, ok)
    with caplog.at_level(logging.WARNING, logger="quant_assets"):
        bars = source().get_bars("AAPL", OPEN, OPEN + pd.Timedelta(minutes=10))
    assert len(bars) == 10 and len(http.urls) == 6
    backoff = [s for s in sleeps if s >= 1]  # urllib3's own waits are 0.2 s and 0.4 s
    assert len(backoff) == 1 and backoff[0] <= 2
    assert "attempt 1 failed (MaxRetryError" in caplog.text and "429" in caplog.text


def test_a_persistent_failure_is_a_clear_error_after_the_bounded_attempts(http, sleeps) -> None:
    http.answer("aggs", (503, {"status": "ERROR"}))
    with pytest.raises(SourceRequestError, match=r"massive bars of AAPL .* after 2 attempt\(s\)"):
        source(max_attempts=2).get_bars("AAPL", OPEN, OPEN + pd.Timedelta(minutes=10))
    assert len(http.urls) == 8  # 2 attempts × (1 + urllib3's 3 retries)


def test_connection_errors_are_retried_and_client_errors_are_not(http, sleeps) -> None:
    ok = (200, aggs_page(minutes("2024-01-03 14:30", "2024-01-03 14:35")))
    http.answer("aggs", *[ConnectionRefusedError("refused")] * 4, ok)
    assert len(source().get_bars("AAPL", OPEN, OPEN + pd.Timedelta(minutes=5))) == 5
    assert len(http.urls) == 5
    http.answer("aggs", (403, {"status": "NOT_AUTHORIZED", "message": "upgrade your plan"}))
    http.urls.clear()
    with pytest.raises(SourceRequestError, match=r"after 1 attempt\(s\): BadResponse.*upgrade"):
        source().get_bars("AAPL", OPEN, OPEN + pd.Timedelta(minutes=5))
    assert len(http.urls) == 1


def test_empty_answers_are_empty_canonical_frames(http, sleeps) -> None:
    http.answer("aggs", (200, {"status": "OK", "resultsCount": 0, "queryCount": 0}))
    http.answer(SPLITS, (200, {"status": "OK", "results": []}))
    http.answer(DIVIDENDS, (200, {"status": "OK", "results": []}))
    bars = source().get_bars("AAPL", OPEN, OPEN + pd.Timedelta(hours=1))
    assert bars.empty and str(bars["ts"].dtype) == "datetime64[ns, UTC]"
    assert bars["volume"].dtype == "int64"
    splits, dividends = source().get_splits("AAPL"), source().get_dividends("AAPL")
    assert splits.empty and list(splits.columns) == ["ticker", "ex_date", "ratio"]
    assert dividends.empty and str(dividends["ex_date"].dtype) == "datetime64[ns]"


def split(day: str, split_from: float, split_to: float, kind: str, ticker: str = "AAPL") -> dict:
    return {
        "ticker": ticker,
        "execution_date": day,
        "split_from": split_from,
        "split_to": split_to,
        "adjustment_type": kind,
        "historical_adjustment_factor": 0.5,
        "id": f"S{day}",
    }


def test_splits_map_to_the_ledger_frame(http, sleeps) -> None:
    page2 = f"{BASE}{SPLITS}?cursor=s2"
    http.answer(
        SPLITS,
        (
            200,
            {
                "results": [
                    split("2024-06-10", 1, 2, "forward_split"),  # 2-for-1
                    split("2024-07-01", 100, 105, "stock_dividend"),  # not a split: skipped
                ],
                "next_url": page2,
            },
        ),
        (200, {"results": [split("2024-09-02", 10, 1, "reverse_split")]}),  # 1-for-10
    )
    start, end = pd.Timestamp("2024-01-01"), pd.Timestamp("2024-12-31")
    splits = source().get_splits("AAPL", start, end)
    assert splits["ex_date"].tolist() == [pd.Timestamp("2024-06-10"), pd.Timestamp("2024-09-02")]
    assert splits["ratio"].tolist() == [2.0, 0.1]
    assert str(splits["ex_date"].dtype) == "datetime64[ns]"
    first = http.params(0)
    assert first["ticker"] == "AAPL" and first["limit"] == "5000"
    assert first["execution_date.gte"] == "2024-01-01"
    assert first["execution_date.lte"] == "2024-12-31"
    assert http.params(1) == {"cursor": "s2"}


def dividend(day: str, amount: float, currency: str = "USD") -> dict:
    return {
        "ticker": "AAPL",
        "ex_dividend_date": day,
        "cash_amount": amount,
        "currency": currency,
        "distribution_type": "recurring",
        "frequency": 4,
        "id": f"D{day}",
    }


def test_dividends_map_to_the_ledger_frame(http, sleeps, caplog) -> None:
    cash = [
        dividend("2024-05-10", 0.25),
        dividend("2024-08-12", 0.5),
        dividend("2024-09-01", 1, "CAD"),
    ]
    http.answer(DIVIDENDS, (200, {"results": cash}))
    with caplog.at_level(logging.WARNING, logger="quant_assets"):
        dividends = source().get_dividends("AAPL", start=pd.Timestamp("2024-06-01"))
    assert dividends["ex_date"].tolist() == [pd.Timestamp("2024-08-12")]
    assert dividends["amount"].tolist() == [0.5]
    assert http.params()["ex_dividend_date.gte"] == "2024-06-01"
    assert "ex_dividend_date.lte" not in http.params()
    assert "paid in CAD skipped" in caplog.text


def test_keys_stay_out_of_repr_logs_errors_and_urls(http, sleeps, caplog) -> None:
    src = source()
    assert KEY not in repr(src) and KEY not in str(src)
    assert all(KEY not in repr(v) for v in vars(src).values())
    ok = (200, aggs_page(minutes("2024-01-03 14:30", "2024-01-03 14:35")))
    http.answer("aggs", ok)
    with caplog.at_level(logging.DEBUG):
        src.get_bars("AAPL", OPEN, OPEN + pd.Timedelta(minutes=5))
    assert KEY not in http.urls[-1] and http.headers[-1]["Authorization"] == f"Bearer {KEY}"
    assert KEY not in caplog.text  # urllib3's debug lines included: the key is header-only

    # A next_url that carries the key (the server's choice, not the SDK's); its page fails.
    leaky = f"{BASE}/v2/aggs/ticker/AAPL/range/1/minute/1/2?cursor=c2&apiKey={KEY}"
    first = aggs_page(minutes("2024-01-03 14:30", "2024-01-03 14:32"), leaky)
    http.answer("aggs", lambda url: (503, {"status": "ERROR"}) if "cursor" in url else (200, first))
    caplog.clear()
    with (
        caplog.at_level(logging.WARNING, logger="quant_assets"),
        pytest.raises(SourceRequestError) as caught,
    ):
        source(max_attempts=2).get_bars("AAPL", OPEN, OPEN + pd.Timedelta(minutes=5))
    message = str(caught.value)
    assert "apiKey=***" in message and KEY not in message
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("quant_assets")]
    assert ours and all(KEY not in m for m in ours)


def test_a_missing_sdk_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="needs an API key"):
        MassiveSource("")
    monkeypatch.setitem(sys.modules, "massive", None)
    with pytest.raises(ImportError, match=r"pip install 'quant_assets\[massive\]'"):
        MassiveSource(KEY)
