"""Partitions: weekday sessions (America/New_York) × tickers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dagster as dg
import pandas as pd

from quant_assets.market.calendar import MARKET_TZ
from quant_assets.settings import get_settings

DATE_DIM = "date"
TICKER_DIM = "ticker"
DATE_FMT = "%Y-%m-%d"
# The run tags by which Dagster's own backfills make one run cover a range of partitions
# (``RunRequest.partition_key_range`` reads them); Dagster exports no name for them.
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"

# Weekdays, not only sessions: a holiday is a partition that materializes empty and valid, so
# the grid has no unexplained holes and backfills need no calendar of their own.
session_partitions = dg.TimeWindowPartitionsDefinition(
    cron_schedule="0 0 * * 1-5",
    start=get_settings().partitions_start.strftime(DATE_FMT),
    fmt=DATE_FMT,
    timezone=MARKET_TZ,
    end_offset=1,  # today's partition exists while its session is live
)
ticker_partitions = dg.StaticPartitionsDefinition(list(get_settings().tickers))
day_ticker_partitions = dg.MultiPartitionsDefinition(
    {DATE_DIM: session_partitions, TICKER_DIM: ticker_partitions}
)


def day_ticker_key(day: pd.Timestamp | str, ticker: str) -> str:
    """The multi-partition key string of one session and ticker."""
    date_key = pd.Timestamp(day).strftime(DATE_FMT)
    return dg.MultiPartitionKey({DATE_DIM: date_key, TICKER_DIM: ticker})


def split_keys(keys: Iterable[str]) -> dict[str, list[pd.Timestamp]]:
    """Group multi-partition keys into {ticker: sorted session labels}."""
    by_ticker: dict[str, list[pd.Timestamp]] = {}
    for key in keys:
        dims = day_ticker_partitions.get_partition_key_from_str(str(key)).keys_by_dimension
        by_ticker.setdefault(dims[TICKER_DIM], []).append(pd.Timestamp(dims[DATE_DIM]))
    return {t: sorted(days) for t, days in by_ticker.items()}


def range_tags(
    first: pd.Timestamp | str, last: pd.Timestamp | str, tickers: Sequence[str] | None = None
) -> dict[str, str]:
    """Run tags that make one run cover sessions first … last × all tickers (a rectangle)."""
    tickers = list(tickers or get_settings().tickers)
    return {
        PARTITION_RANGE_START_TAG: day_ticker_key(first, tickers[0]),
        PARTITION_RANGE_END_TAG: day_ticker_key(last, tickers[-1]),
    }


# The Dagster pool of the assets that write the big per-minute tables (raw_bars, adjusted_bars,
# features, labels): the production instance (dagster.production.yaml) gives it one slot, so
# one run at a time writes them; instances without pool limits ignore it.
BIG_TABLES_POOL = "big_tables"
