"""AlpacaSource offline: JSON pages fed to alpaca-py's own client through a fake HTTP adapter.

``requests.adapters.HTTPAdapter.send`` is replaced, so the SDK's request building, paging
(``next_page_token``), 429 retry and model parsing all run as they do against the real API.
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
import requests
from requests.adapters import HTTPAdapter

from quant_assets.market import calendar
from quant_assets.market.alpaca_source import AlpacaFeed, AlpacaSource
from quant_assets.market.sources import MarketSource, SourceRequestError

KEY = "AKFAKEKEY0123456789"
SECRET = "fAkEsEcReT-0123456789abcdefghij"
BARS = "/v2/stocks/bars"
ACTIONS = "/v1/corporate-actions"
OPEN = pd.Timestamp("2024-01-03 14:30", tz="UTC")  # a Wednesday, a full session

Reply = tuple[int, object] | Exception | Callable[[requests.PreparedRequest], tuple[int, object]]


class FakeAlpacaHTTP:
    """Answers each path from its queue of replies; the last reply of a queue repeats."""

    def __init__(self) -> None:
        self.replies: dict[str, list[Reply]] = defaultdict(list)
        self.requests: list[requests.PreparedRequest] = []

    def answer(self, path: str, *replies: Reply) -> None:
        """Answer ``path`` with these replies from now on, in order; the last one repeats."""
        self.replies[path] = list(replies)

    def send(self, request: requests.PreparedRequest) -> requests.Response:
        self.requests.append(request)
        queue = self.replies[urlparse(request.url).path]
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(reply, Exception):
            raise reply
        status, body = reply(request) if callable(reply) else reply
        response = requests.Response()
        response.status_code = status
        response.reason = "OK" if status == 200 else "Error"
        response.url = request.url
        response.request = request
        response._content = (body if isinstance(body, str) else json.dumps(body)).encode()
        return response

    def params(self, index: int = -1) -> dict[str, str]:
        query = parse_qs(urlparse(self.requests[index].url).query)
        return {k: v[0] for k, v in query.items()}


@pytest.fixture
def http(monkeypatch: pytest.MonkeyPatch) -> FakeAlpacaHTTP:
    fake = FakeAlpacaHTTP()
    monkeypatch.setattr(HTTPAdapter, "send", lambda _adapter, request, **_kw: fake.send(request))
    return fake


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every sleep (the SDK's fixed 3 s, tenacity's backoff), recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)
    return slept


def source(feed: AlpacaFeed = "iex", max_attempts: int = 3) -> AlpacaSource:
    return AlpacaSource(KEY, SECRET, feed, min_interval_s=0, max_attempts=max_attempts)


def bar_json(ts: pd.Timestamp, price: float = 100.0, volume: float = 250.0) -> dict:
    """One bar as Alpaca's JSON has it (``t`` = bar start, RFC 3339; ``v`` a float)."""
    stamp = ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "t": stamp,
        "o": price,
        "h": price + 0.1,
        "l": price - 0.1,
        "c": price,
        "v": volume,
        "n": 3,
        "vw": price,
    }


def bars_page(ts: pd.DatetimeIndex, token: str | None = None, ticker: str = "AAPL") -> dict:
    return {"bars": {ticker: [bar_json(t) for t in ts]}, "next_page_token": token}


def minutes(start: str, end: str) -> pd.DatetimeIndex:
    return pd.date_range(start, end, freq="min", inclusive="left", tz="UTC")


def test_bars_are_raw_canonical_utc_bar_starts_of_the_regular_session(http, sleeps) -> None:
    # 13:00–21:00 UTC = 08:00–16:00 New York: pre-market bars come too, as Alpaca sends them.
    http.answer(BARS, (200, bars_page(minutes("2024-01-03 13:00", "2024-01-03 21:00"))))
    bars = source().get_bars("AAPL", OPEN - pd.Timedelta(hours=2), OPEN + pd.Timedelta(hours=8))
    assert list(bars.columns) == ["ticker", "ts", "open", "high", "low", "close", "volume"]
    assert str(bars["ts"].dtype) == "datetime64[ns, UTC]"
    assert bars["volume"].dtype == "int64" and bars["volume"].eq(250).all()
    assert bars["open"].dtype == "float64" and str(bars["ticker"].dtype) == "string"
    assert len(bars) == 390  # pre/post-market bars dropped
    assert bars["ts"].iloc[0] == OPEN
    assert bars["ts"].iloc[-1] == pd.Timestamp("2024-01-03 20:59", tz="UTC")
    params = http.params()
    assert params["adjustment"] == "raw" and params["feed"] == "iex"
    assert params["timeframe"] == "1Min" and params["symbols"] == "AAPL"
    assert isinstance(source(), MarketSource)


def test_the_sip_feed_is_asked_for_and_an_unknown_feed_refused(http, sleeps) -> None:
    http.answer(BARS, (200, bars_page(minutes("2024-01-03 14:30", "2024-01-03 14:40"))))
    assert len(source("sip").get_bars("AAPL", OPEN, OPEN + pd.Timedelta(minutes=10))) == 10
    assert http.params()["feed"] == "sip"
    with pytest.raises(ValueError, match="unknown Alpaca feed"):
        source("delayed_sip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tz-aware"):
        source().get_bars("AAPL", pd.Timestamp("2024-01-03"), pd.Timestamp("2024-01-04"))


def test_an_injected_client_gets_the_request_and_its_models_are_read(sleeps) -> None:
    from alpaca.data.enums import Adjustment, DataFeed
    from alpaca.data.models import BarSet

    class Client:
        def get_stock_bars(self, request):
            self.request = request
            return BarSet(
                {"AAPL": [bar_json(t) for t in minutes("2024-01-03 14:30", "2024-01-03 14:40")]}
            )

    client = Client()
    src = AlpacaSource(KEY, SECRET, "sip", bars_client=client, min_interval_s=0)  # type: ignore[arg-type]
    bars = src.get_bars("AAPL", OPEN, OPEN + pd.Timedelta(minutes=10))
    assert len(bars) == 10 and bars["ts"].iloc[0] == OPEN
    assert client.request.adjustment == Adjustment.RAW and client.request.feed == DataFeed.SIP


def test_a_multi_page_answer_is_read_completely_without_duplicates(http, sleeps) -> None:
    day = minutes("2024-01-03 14:30", "2024-01-03 21:00")
    http.answer(
        BARS,
        (200, bars_page(day[:150], "tok-1")),
        (200, bars_page(day[150:300], "tok-2")),
        (200, bars_page(day[300:], None)),
    )
    bars = source().get_bars("AAPL", OPEN, OPEN + pd.Timedelta(hours=7))
    assert len(http.requests) == 3
    assert [http.params(i).get("page_token") for i in range(3)] == [None, "tok-1", "tok-2"]
    assert bars["ts"].tolist() == list(day)  # every bar once, in order


def chunk_answer(request: requests.PreparedRequest) -> tuple[int, object]:
    """Regular-session bars for exactly the [start, end] the request asks for."""
    query = {k: v[0] for k, v in parse_qs(urlparse(request.url).query).items()}
    start, end = pd.Timestamp(query["start"]), pd.Timestamp(query["end"])
    ts = calendar.trading_minutes(start, end + pd.Timedelta(minutes=1))  # Alpaca's end: inclusive
    return 200, bars_page(ts, ticker=query["symbols"])


def test_a_long_range_is_split_into_chunks_of_at_most_ten_days(http, sleeps) -> None:
    http.answer(BARS, chunk_answer)
    start, end = calendar.span_of_days("2024-01-02", "2024-01-31")
    bars = source().get_bars("MSFT", start, end)
    windows = [
        (pd.Timestamp(http.params(i)["start"]), pd.Timestamp(http.params(i)["end"]))
        for i in range(len(http.requests))
    ]
    assert len(windows) == 3 and windows[0][0] == start and windows[-1][1] == end
    assert all(e - s <= pd.Timedelta(days=10) for s, e in windows)
    assert all(windows[i][1] == windows[i + 1][0] for i in range(len(windows) - 1))
    assert bars["ts"].tolist() == list(calendar.trading_minutes(start, end))  # the edge bar once
    assert bars["ticker"].eq("MSFT").all()


def test_429_beyond_the_sdk_retries_is_retried_with_backoff(http, sleeps, caplog) -> None:
    # alpaca-py retries a 429 three times itself (4 requests), then raises APIError(429):
    # the source retries the call, and the 6th request succeeds.
    limited = (429, {"message": "too many requests."})
    ok = (200, bars_page(minutes("2024-01-03 14:30", "2024-01-03 14:40")))
    http.answer(BARS, *[limited] * 5, ok)
    with caplog.at_level(logging.WARNING, logger="quant_assets"):
        bars = source().get_bars("AAPL", OPEN, OPEN + pd.Timedelta(minutes=10))
    assert len(bars) == 10 and len(http.requests) == 6
    assert sleeps.count(3) == 4  # the SDK's fixed waits
    backoff = [s for s in sleeps if s != 3]
    assert len(backoff) == 1 and 1 <= backoff[0] <= 2  # tenacity: 1 s + up to 1 s of jitter
    assert "attempt 1 failed" in caplog.text and "too many requests" in caplog.text


def test_a_persistent_failure_is_a_clear_error_after_the_bounded_attempts(http, sleeps) -> None:
    http.answer(BARS, (503, {"message": "service unavailable"}))
    with pytest.raises(SourceRequestError, match=r"alpaca bars of AAPL .* after 3 attempt\(s\)"):
        source(max_attempts=3).get_bars("AAPL", OPEN, OPEN + pd.Timedelta(minutes=10))
    assert len(http.requests) == 3  # 503 is not one the SDK retries: one request per attempt
    waits = sorted(sleeps)
    assert len(waits) == 2 and waits[1] >= 2  # exponential: ≥ 1 s, then ≥ 2 s


def test_connection_errors_are_retried_and_client_errors_are_not(http, sleeps) -> None:
    ok = (200, bars_page(minutes("2024-01-03 14:30", "2024-01-03 14:35")))
    http.answer(BARS, requests.ConnectionError("connection reset"), ok)
    assert len(source().get_bars("AAPL", OPEN, OPEN + pd.Timedelta(minutes=5))) == 5
    http.answer(BARS, (403, {"message": "subscription does not permit querying recent SIP data"}))
    http.requests.clear()
    with pytest.raises(SourceRequestError, match=r"after 1 attempt\(s\).*subscription"):
        source("sip").get_bars("AAPL", OPEN, OPEN + pd.Timedelta(minutes=5))
    assert len(http.requests) == 1


def test_empty_answers_are_empty_canonical_frames(http, sleeps) -> None:
    http.answer(BARS, (200, {"bars": {}, "next_page_token": None}))
    http.answer(ACTIONS, (200, {"corporate_actions": {}, "next_page_token": None}))
    bars = source().get_bars("AAPL", OPEN, OPEN + pd.Timedelta(hours=1))
    assert bars.empty and str(bars["ts"].dtype) == "datetime64[ns, UTC]"
    assert bars["volume"].dtype == "int64"
    splits, dividends = source().get_splits("AAPL"), source().get_dividends("AAPL")
    assert splits.empty and list(splits.columns) == ["ticker", "ex_date", "ratio"]
    assert dividends.empty and str(dividends["ex_date"].dtype) == "datetime64[ns]"
    assert http.params()["start"] == "2014-10-03"  # no start: all history (2015 less 90 days)


def action(ex_date: str, process_date: str, n: int, **fields: object) -> dict:
    return {
        "id": f"00000000-0000-0000-0000-{n:012d}",
        "symbol": "AAPL",
        "cusip": "037833100",
        "ex_date": ex_date,
        "process_date": process_date,
        **fields,
    }


def test_splits_and_dividends_map_to_the_ledger_frames(http, sleeps) -> None:
    forward = action("2024-06-10", "2024-06-10", 1, new_rate=2, old_rate=1)  # 2-for-1
    reverse = action("2024-09-02", "2024-09-02", 2, new_rate=1, old_rate=10)  # 1-for-10
    reverse |= {"old_cusip": reverse.pop("cusip"), "new_cusip": "037833999"}
    outside = action("2023-11-01", "2024-01-05", 3, new_rate=3, old_rate=1)  # processed in range
    http.answer(
        ACTIONS,
        (
            200,
            {"corporate_actions": {"forward_splits": [forward, outside]}, "next_page_token": "p2"},
        ),
        (200, {"corporate_actions": {"reverse_splits": [reverse]}, "next_page_token": None}),
    )
    start, end = pd.Timestamp("2024-01-01"), pd.Timestamp("2024-12-31")
    splits = source().get_splits("AAPL", start, end)
    assert splits["ex_date"].tolist() == [pd.Timestamp("2024-06-10"), pd.Timestamp("2024-09-02")]
    assert splits["ratio"].tolist() == [2.0, 0.1]
    assert str(splits["ex_date"].dtype) == "datetime64[ns]"
    first, second = http.params(-2), http.params(-1)
    assert first["symbols"] == "AAPL" and first["types"] == "forward_split,reverse_split"
    assert (first["start"], first["end"]) == ("2023-10-03", "2025-03-31")  # ±90 days
    assert second["page_token"] == "p2"

    cash = [
        action("2024-05-10", "2024-05-16", 4, rate=0.25, special=False, foreign=False),
        action("2024-08-12", "2024-08-15", 5, rate=0.5, special=True, foreign=False),
    ]
    http.answer(
        ACTIONS, (200, {"corporate_actions": {"cash_dividends": cash}, "next_page_token": None})
    )
    dividends = source().get_dividends("AAPL", start=pd.Timestamp("2024-06-01"))
    assert dividends["ex_date"].tolist() == [pd.Timestamp("2024-08-12")]
    assert dividends["amount"].tolist() == [0.5]
    assert http.params()["types"] == "cash_dividend"


def test_keys_stay_out_of_repr_logs_errors_and_urls(http, sleeps, caplog) -> None:
    src = source()
    assert KEY not in repr(src) and SECRET not in str(src) and "iex" in repr(src)
    assert all(KEY not in repr(v) and SECRET not in repr(v) for v in vars(src).values())
    # A body that echoes the key (as a misbehaving proxy might) is redacted too.
    http.answer(BARS, (401, {"message": f"invalid key {KEY} / {SECRET}"}))
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceRequestError) as caught:
        src.get_bars("AAPL", OPEN, OPEN + pd.Timedelta(minutes=5))
    message = str(caught.value)
    assert "invalid key ***" in message and KEY not in message and SECRET not in message
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    http.answer(BARS, (503, {"message": f"down {SECRET}"}))
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceRequestError):
        src.get_bars("AAPL", OPEN, OPEN + pd.Timedelta(minutes=5))
    assert "attempt 1 failed" in caplog.text
    assert KEY not in caplog.text and SECRET not in caplog.text
    sent = http.requests[-1]
    assert KEY not in sent.url and SECRET not in sent.url  # keys go in headers only
    assert sent.headers["APCA-API-KEY-ID"] == KEY


def test_a_missing_sdk_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="needs an API key and a secret key"):
        AlpacaSource(KEY, "")
    monkeypatch.setitem(sys.modules, "alpaca", None)
    with pytest.raises(ImportError, match=r"pip install 'quant_assets\[alpaca\]'"):
        AlpacaSource(KEY, SECRET)
