"""``raw_bars``: the source's 1-minute bars, one partition per session × ticker."""

import dagster as dg
import pandas as pd
from sqlalchemy import Engine, func, or_, select

from quant_assets.defs.partitions import day_ticker_partitions, split_keys
from quant_assets.defs.resources import DatabaseResource, MarketSourceResource
from quant_assets.ingestion.sessions import SessionIngest, ingest_sessions
from quant_assets.market import calendar
from quant_assets.storage.database import to_db_timestamp
from quant_assets.storage.schema import price_data

COMPLETENESS_THRESHOLD = 0.98  # share of calendar minutes with a bar; no-trade minutes exist

CHECK_DUPLICATES = "no_duplicate_bars"
CHECK_OHLC = "ohlc_sanity"
CHECK_COMPLETENESS = "complete_against_calendar"


@dg.asset(
    partitions_def=day_ticker_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="ingestion",
    kinds={"sql", "pandas"},
    description=(
        "Raw (as traded) regular-session 1-minute bars from the configured market source, "
        "validated and upserted into table price_data. Never adjusted in place. A holiday "
        "materializes an empty, valid partition. A range of partitions runs as one run."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_DUPLICATES,
            asset="raw_bars",
            description="The source sent no conflicting rows for one (ticker, ts).",
        ),
        dg.AssetCheckSpec(
            CHECK_OHLC,
            asset="raw_bars",
            description="Stored bars: low ≤ open, close ≤ high; prices > 0.",
        ),
        dg.AssetCheckSpec(
            CHECK_COMPLETENESS,
            asset="raw_bars",
            description=f"≥ {COMPLETENESS_THRESHOLD:.0%} of session minutes stored.",
        ),
    ],
)
def raw_bars(
    context: dg.AssetExecutionContext, database: DatabaseResource, market: MarketSourceResource
) -> dg.MaterializeResult:
    """Fetch, validate and store the bars of every session × ticker partition of this run."""
    engine = database.engine
    source = market.get_source()
    by_ticker = split_keys(context.partition_keys)
    reports: list[SessionIngest] = []
    changed = 0
    reasons: dict[str, int] = {}
    for i, (ticker, days) in enumerate(sorted(by_ticker.items()), start=1):
        result = ingest_sessions(source, engine, ticker, days, market.tickers)
        reports += result.sessions
        changed += result.rows_changed
        for reason, n in result.quarantine_reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
        context.log.info(
            f"[{i}/{len(by_ticker)}] {ticker}: {sum(r.rows for r in result.sessions)} bars "
            f"over {len(days)} partitions, {result.rows_changed} new or changed"
        )
    span = _span(reports)
    return dg.MaterializeResult(
        metadata=_metadata(reports, changed, reasons, source.name, database.describe()),
        check_results=[
            dg.AssetCheckResult(
                check_name=CHECK_DUPLICATES,
                passed=reasons.get("duplicate", 0) == 0,
                metadata={"conflicting_rows": reasons.get("duplicate", 0)},
            ),
            _ohlc_check(engine, list(by_ticker), span),
            _completeness_check(reports),
        ],
    )


def _span(reports: list[SessionIngest]) -> tuple[pd.Timestamp, pd.Timestamp]:
    days = [r.day for r in reports]
    return calendar.span_of_days(min(days), max(days))


def _metadata(
    reports: list[SessionIngest],
    changed: int,
    reasons: dict[str, int],
    source_name: str,
    database: str,
) -> dict[str, dg.MetadataValue]:
    rows = sum(r.rows for r in reports)
    expected = sum(r.expected_minutes for r in reports)
    firsts = [r.first_ts for r in reports if r.first_ts is not None]
    lasts = [r.last_ts for r in reports if r.last_ts is not None]
    holidays = sorted({r.day.date().isoformat() for r in reports if r.expected_minutes == 0})
    return {
        "rows": dg.MetadataValue.int(rows),
        "rows_new_or_changed": dg.MetadataValue.int(changed),
        "partitions": dg.MetadataValue.int(len(reports)),
        "expected_minutes": dg.MetadataValue.int(expected),
        "missing_minutes": dg.MetadataValue.int(expected - rows),
        "quarantined_rows": dg.MetadataValue.json(reasons),
        "first_ts": dg.MetadataValue.text(min(firsts).isoformat() if firsts else "none"),
        "last_ts": dg.MetadataValue.text(max(lasts).isoformat() if lasts else "none"),
        "non_session_days": dg.MetadataValue.json(holidays),
        "source": dg.MetadataValue.text(source_name),
        "database": dg.MetadataValue.text(database),
        "per_partition": dg.MetadataValue.md(_partition_table(reports)),
    }


def _partition_table(reports: list[SessionIngest], limit: int = 200) -> str:
    lines = [
        "| date | ticker | rows | expected | missing | quarantined |",
        "|---|---|---|---|---|---|",
    ]
    shown = sorted(reports, key=lambda r: (-r.missing_minutes, r.day, r.ticker))[:limit]
    lines += [
        f"| {r.day.date()} | {r.ticker} | {r.rows} | {r.expected_minutes} | "
        f"{r.missing_minutes} | {r.quarantined} |"
        for r in shown
    ]
    if len(reports) > limit:
        lines.append(f"\n{len(reports) - limit} more partitions (sorted by missing minutes).")
    return "\n".join(lines)


def _ohlc_check(
    engine: Engine, tickers: list[str], span: tuple[pd.Timestamp, pd.Timestamp]
) -> dg.AssetCheckResult:
    c = price_data.c
    insane = or_(
        c.low > c.high,
        c.open < c.low,
        c.open > c.high,
        c.close < c.low,
        c.close > c.high,
        c.low <= 0,
        c.volume < 0,
    )
    query = select(func.count()).where(
        c.ts >= to_db_timestamp(span[0], engine),
        c.ts < to_db_timestamp(span[1], engine),
        c.ticker.in_(tickers),
        insane,
    )
    with engine.connect() as conn:
        bad = conn.execute(query).scalar_one()
    return dg.AssetCheckResult(
        check_name=CHECK_OHLC, passed=bad == 0, metadata={"insane_rows": int(bad)}
    )


def _completeness_check(reports: list[SessionIngest]) -> dg.AssetCheckResult:
    expected = sum(r.expected_minutes for r in reports)
    rows = sum(r.rows for r in reports)
    share = rows / expected if expected else 1.0
    worst = sorted(reports, key=lambda r: -r.missing_minutes)[:5]
    return dg.AssetCheckResult(
        check_name=CHECK_COMPLETENESS,
        passed=share >= COMPLETENESS_THRESHOLD,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "share_complete": dg.MetadataValue.float(share),
            "missing_minutes": dg.MetadataValue.int(expected - rows),
            "worst_partitions": dg.MetadataValue.json(
                [f"{r.day.date()}|{r.ticker}: {r.missing_minutes}" for r in worst]
            ),
        },
    )
