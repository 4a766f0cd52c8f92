"""The quarantine's row layout: refused bar rows kept as received, each keyed by a hash of it.

Shared by the bar writer (``bars.write_quarantine``) and the schema migration of the old table,
so both compute the same key.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from quant_assets.market.frames import BAR_COLUMNS


def row_key(ticker: str | None, ts_iso: str | None, reason: str, payload: str) -> str:
    """The primary key of a quarantined row: sha256 of everything it holds."""
    return hashlib.sha256(repr((ticker, ts_iso, reason, payload)).encode()).hexdigest()


def quarantine_rows(quarantined: pd.DataFrame, seen_at: pd.Timestamp) -> pd.DataFrame:
    """Refused rows in the ``bar_quarantine`` layout, whatever they hold (NaN, NaT, None, any
    ticker): the values as received become text, and the row's key is a hash of all of it."""
    ticker = [None if pd.isna(t) else str(t) for t in quarantined["ticker"]]
    ts = pd.to_datetime(quarantined["ts"], utc=True).reset_index(drop=True)
    payload = [
        ",".join(_as_text(v) for v in row)
        for row in quarantined[list(BAR_COLUMNS[2:])].itertuples(index=False, name=None)
    ]
    reason = [str(r) for r in quarantined["reason"]]
    stamp = [None if pd.isna(t) else t.isoformat() for t in ts]
    keys = [row_key(*parts) for parts in zip(ticker, stamp, reason, payload, strict=True)]
    frame = pd.DataFrame(
        {
            "row_key": keys,
            "ticker": pd.Series(ticker, dtype="object"),
            "ts": ts.astype("datetime64[ns, UTC]"),
            "reason": reason,
            "payload": payload,
        }
    )
    frame["seen_at"] = pd.Series([seen_at] * len(frame), dtype="datetime64[ns, UTC]")
    return frame.drop_duplicates("row_key", keep="last").reset_index(drop=True)


def _as_text(value: object) -> str:
    return "" if value is None else str(value)
