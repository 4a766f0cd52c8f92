"""Partitions: weekday sessions (America/New_York), × tickers for the raw bars.

``raw_bars`` is partitioned by day × ticker: a source delivers, misses and is backfilled one
ticker-session at a time (the poller's gaps, ``quant import`` of a few tickers). The derived
tables (``adjusted_bars``, ``features``, ``labels``) are partitioned by day only, each day
mapped from that day's raw-bar partitions of every ticker: they are rebuilt per day for the
whole universe, so one Dagster event per day (not per day × ticker) records the work, and the
per-ticker figures are in each materialization's metadata.
"""

from __future__ import annotations

import warnings
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
# Dagster's advice: keep one asset under about 100k partitions (its UI and backfills slow down
# beyond). The grid grows by one key per ticker each weekday: ~261 weekdays a year.
MAX_PARTITION_KEYS = 100_000
WEEKDAYS_PER_YEAR = 261

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


class PartitionGridWarning(UserWarning):
    """The day × ticker partition grid is larger than Dagster advises for one asset."""


def grid_warning(
    partitions: dg.MultiPartitionsDefinition = day_ticker_partitions, limit: int | None = None
) -> str | None:
    """The advice for a day × ticker grid past ``limit`` (default ``MAX_PARTITION_KEYS``) keys
    today; None while it is within."""
    limit = MAX_PARTITION_KEYS if limit is None else limit
    counts = {d.name: d.partitions_def.get_num_partitions() for d in partitions.partitions_defs}
    days, tickers = counts[DATE_DIM], counts[TICKER_DIM]
    if days * tickers <= limit:
        return None
    return (
        f"the day × ticker partition grid of raw_bars has "
        f"{days * tickers:,} keys ({days:,} weekdays since QUANT_PARTITIONS_START × {tickers:,} "
        f"tickers), more than the ~{limit:,} partitions per asset Dagster advises (about "
        f"{limit // WEEKDAYS_PER_YEAR} tickers for one year): the UI's partition views and "
        "backfills slow down. Set QUANT_PARTITIONS_START later or QUANT_TICKERS shorter, or "
        "for a universe this large partition by day only (the tickers looped inside the run) "
        "or by ticker groups; see the README, 'Partitioned assets'"
    )


def warn_if_grid_too_large(
    partitions: dg.MultiPartitionsDefinition = day_ticker_partitions, limit: int | None = None
) -> None:
    """``warnings.warn`` the ``grid_warning`` advice, if any (on the stderr of each process
    that loads the definitions: ``dagster dev``'s terminal, ``dagster definitions validate``)."""
    message = grid_warning(partitions, limit)
    if message:
        warnings.warn(message, PartitionGridWarning, stacklevel=2)


def day_ticker_key(day: pd.Timestamp | str, ticker: str) -> str:
    """The multi-partition key string of one session and ticker."""
    return dg.MultiPartitionKey({DATE_DIM: day_key(day), TICKER_DIM: ticker})


def day_key(day: pd.Timestamp | str) -> str:
    """The partition key of one session of a day-partitioned asset."""
    return pd.Timestamp(day).strftime(DATE_FMT)


def partition_days(keys: Iterable[str]) -> list[pd.Timestamp]:
    """The sorted session labels of day partition keys."""
    return sorted(pd.Timestamp(str(k)) for k in keys)


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
    """Run tags that make one run of a day × ticker job cover sessions first … last × all
    tickers (a rectangle)."""
    tickers = list(tickers or get_settings().tickers)
    return {
        PARTITION_RANGE_START_TAG: day_ticker_key(first, tickers[0]),
        PARTITION_RANGE_END_TAG: day_ticker_key(last, tickers[-1]),
    }


def day_range_tags(first: pd.Timestamp | str, last: pd.Timestamp | str) -> dict[str, str]:
    """Run tags that make one run of a day-partitioned job cover sessions first … last."""
    return {PARTITION_RANGE_START_TAG: day_key(first), PARTITION_RANGE_END_TAG: day_key(last)}


def job_range_tags(
    partitions_def: dg.PartitionsDefinition | None,
    first: pd.Timestamp | str,
    last: pd.Timestamp | str,
    tickers: Sequence[str] | None = None,
) -> dict[str, str]:
    """The range tags for a job of either partitioning (``tickers`` bound only the day × ticker
    rectangle; a day-partitioned job builds every ticker of its market resource)."""
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        return range_tags(first, last, tickers)
    return day_range_tags(first, last)


# The Dagster pool of the assets that write the big per-minute tables (raw_bars, adjusted_bars,
# features, labels): the production instance (dagster.production.yaml) gives it one slot, so
# one run at a time writes them; instances without pool limits ignore it.
BIG_TABLES_POOL = "big_tables"
