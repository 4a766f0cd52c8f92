"""Ingestion in Dagster: ``raw_bars``, its job, the gap backfill sensor and the after-close job.

``raw_bars`` holds the source's 1-minute bars, one partition per session × ticker; a range of
partitions runs as one run.

``gap_backfill_sensor`` turns the live poller's backfill queue into ``raw_bars`` partition runs.
Each tick (at most every ``SENSOR_INTERVAL_S``) looks at the open entries of ``backfill_queue``,
grouped by day × ticker partition, oldest first, at most ``MAX_PARTITIONS_PER_TICK`` partitions:

1. Entries already ``requested``: their run (found by run key) still queued or running → wait;
   failed or canceled, or never started within ``LOST_AFTER_S`` → back to ``pending``
   (retried); succeeded — or the partition was re-materialized by any run since the request
   (a backfill from the UI, ``quant backfill``) → settle them (step 2).
2. Settle: ``backfill_queue.assess`` compares the gap's minutes at the source with
   ``price_data``: every source bar stored → ``done``; the source has none → ``unfillable``
   (no trade, a halt). This also runs *before* any run, so a gap of no-trade minutes never costs
   a run.
3. Entries whose bars the source has and the database lacks get one ``RunRequest`` per
   partition (``partition_key`` = the day × ticker key; ``run_key`` = partition, entry ids and
   attempt) and become ``requested``. After ``MAX_ATTEMPTS`` runs that did not fill them they
   stay ``pending`` with a note, for ``quant backfill``.

The cursor (JSON) remembers, per open entry, the run key it was requested under and how many
attempts it had: together with the ``requested`` status this is what keeps a later tick from
launching the same partition twice. Heavy work (fetching whole sessions) happens in the runs;
the sensor itself makes one source request and one database read per partition it settles.

``after_close_backfill_schedule`` (16:30 New York) runs ``gap_backfill_job``: the same queue
settled in one run, as ``quant backfill`` does by hand.
"""

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Self

import dagster as dg
import pandas as pd
from sqlalchemy import Engine, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from quant_assets.defs.metadata import json_value
from quant_assets.defs.partitions import (
    BIG_TABLES_POOL,
    day_ticker_key,
    day_ticker_partitions,
    grid_warning,
    split_keys,
)
from quant_assets.defs.resources import DatabaseResource, MarketSourceResource
from quant_assets.ingestion import backfill_queue as queue
from quant_assets.ingestion.backfill_queue import GapEntry
from quant_assets.ingestion.sessions import SessionIngest, ingest_sessions, session_summary
from quant_assets.market import calendar
from quant_assets.market.coverage import (
    RELATIVE_COMPLETENESS,
    TickerCoverage,
    incomplete_sessions,
    summarize_sessions,
    ticker_coverage,
)
from quant_assets.market.sources import MarketSource
from quant_assets.market.spikes import find_price_spikes
from quant_assets.storage.bars import read_bars
from quant_assets.storage.database import DatabaseUnavailableError, to_db_timestamp
from quant_assets.storage.schema import price_data

log = logging.getLogger(__name__)

REFERENCE_SESSIONS = 20  # stored sessions before a run that set a ticker's typical coverage
WORST_LISTED = 10

CHECK_DUPLICATES = "no_duplicate_bars"
CHECK_OHLC = "ohlc_sanity"
CHECK_COMPLETENESS = "complete_against_calendar"
CHECK_SPIKES = "no_price_spikes"
_PROGRESS = re.compile(r"\[\d+/\d+\] (\S+): ")  # progress_line's start


@dg.asset(
    partitions_def=day_ticker_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=BIG_TABLES_POOL,
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
            CHECK_SPIKES,
            asset="raw_bars",
            description=(
                "No price far from the closes on both sides of it in its session (a single bad "
                "print); reported, never dropped (market/spikes.py)."
            ),
        ),
        dg.AssetCheckSpec(
            CHECK_COMPLETENESS,
            asset="raw_bars",
            description=(
                f"Every session has ≥ {RELATIVE_COMPLETENESS:.0%} of the ticker's typical share "
                "of minutes (its median over this run and the "
                f"{REFERENCE_SESSIONS} sessions before), or QUANT_COMPLETENESS_FLOOR of all "
                "minutes when that is set."
            ),
        ),
    ],
)
def raw_bars(
    context: dg.AssetExecutionContext, database: DatabaseResource, market: MarketSourceResource
) -> dg.MaterializeResult:
    """Fetch, validate and store the bars of every session × ticker partition of this run."""
    engine = database.engine
    source = market.get_source()
    if advice := grid_warning():  # the run log's copy of the warning given at load
        context.log.warning(advice)
    by_ticker = split_keys(context.partition_keys)
    reports: list[SessionIngest] = []
    changed = 0
    reasons: dict[str, int] = {}
    for i, (ticker, days) in enumerate(sorted(by_ticker.items()), start=1):
        result = ingest_sessions(source, engine, ticker, days)
        reports += result.sessions
        changed += result.rows_changed
        for reason, n in result.quarantine_reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
        context.log.info(
            progress_line(
                i,
                len(by_ticker),
                ticker,
                f"{sum(r.rows for r in result.sessions)} bars over {len(days)} partitions, "
                f"{result.rows_changed} new or changed",
            )
        )
    for report in reports:  # a range run's materialization can only carry the run's totals
        context.log_event(_partition_observation(report))
    span = _span(reports)
    summary = session_summary(reports)
    coverage = ticker_coverage(summary)
    for cov in coverage:
        if cov.holes or cov.truncated:
            context.log.warning(cov.describe())
    metadata = _metadata(reports, changed, reasons, source.name, database.describe())
    return dg.MaterializeResult(
        metadata=metadata | _coverage_metadata(coverage),
        check_results=[
            dg.AssetCheckResult(
                check_name=CHECK_DUPLICATES,
                passed=reasons.get("duplicate", 0) == 0,
                metadata={"conflicting_rows": reasons.get("duplicate", 0)},
            ),
            _ohlc_check(engine, list(by_ticker), span),
            _spike_check(context, engine, list(by_ticker), span),
            _completeness_check(engine, summary, market.settings().completeness_floor),
        ],
    )


def progress_line(done: int, total: int, ticker: str, text: str) -> str:
    """The run's log line when a ticker is done (``quant import`` follows a run by these)."""
    return f"[{done}/{total}] {ticker}: {text}"


def ticker_done(message: str) -> str | None:
    """The ticker a ``progress_line`` reports done (None: another message)."""
    found = _PROGRESS.match(message)
    return found.group(1) if found else None


def _partition_observation(report: SessionIngest) -> dg.AssetObservation:
    """One partition's own figures. Dagster gives every partition of a range run the same
    materialization metadata (dagster-io/dagster#18123), so they travel as an observation of
    that partition."""
    return dg.AssetObservation(
        asset_key="raw_bars",
        partition=day_ticker_key(report.day, report.ticker),
        metadata={
            "rows": report.rows,
            "expected_minutes": report.expected_minutes,
            "missing_minutes": report.missing_minutes,
            "quarantined_rows": report.quarantined,
            "first_ts": report.first_ts.isoformat() if report.first_ts is not None else "none",
            "last_ts": report.last_ts.isoformat() if report.last_ts is not None else "none",
        },
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
        "figures_cover": dg.MetadataValue.text(
            f"the whole run ({len(reports)} partitions); each partition's own rows, missing "
            "minutes and quarantined rows are in its observation"
        ),
        "partitions": dg.MetadataValue.int(len(reports)),
        "expected_minutes": dg.MetadataValue.int(expected),
        "missing_minutes": dg.MetadataValue.int(expected - rows),
        "quarantined_rows": json_value(reasons) if reasons else dg.MetadataValue.text("none"),
        "first_ts": dg.MetadataValue.text(min(firsts).isoformat() if firsts else "none"),
        "last_ts": dg.MetadataValue.text(max(lasts).isoformat() if lasts else "none"),
        "non_session_days": json_value(holidays),
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


def _coverage_metadata(coverage: list[TickerCoverage]) -> dict[str, dg.MetadataValue]:
    flagged = {c.ticker: c.to_dict() for c in coverage if c.holes or c.truncated}
    return {
        "holes": dg.MetadataValue.int(sum(len(c.holes) for c in coverage)),
        "series_breaks": dg.MetadataValue.int(sum(len(c.series_breaks) for c in coverage)),
        "truncated_sessions": dg.MetadataValue.int(sum(len(c.truncated) for c in coverage)),
        "coverage": json_value(flagged),
    }


def _spike_check(
    context: dg.AssetExecutionContext,
    engine: Engine,
    tickers: list[str],
    span: tuple[pd.Timestamp, pd.Timestamp],
) -> dg.AssetCheckResult:
    spikes = find_price_spikes(read_bars(engine, tickers, *span))
    listed = [
        f"{r.ticker} {r.ts.isoformat()} {r.column} {r.price:g} (near {r.reference:g})"
        for r in spikes.head(WORST_LISTED).itertuples()
    ]
    for line in listed:
        context.log.warning(f"price spike: {line}")
    return dg.AssetCheckResult(
        check_name=CHECK_SPIKES,
        passed=spikes.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "spiked_prices": dg.MetadataValue.int(len(spikes)),
            "spikes": json_value(listed),
        },
    )


def _completeness_check(
    engine: Engine, summary: pd.DataFrame, floor: float | None
) -> dg.AssetCheckResult:
    reference = _reference_summary(engine, summary) if floor is None else None
    flagged = incomplete_sessions(summary, reference, floor)
    worst = flagged.sort_values("share").head(WORST_LISTED)
    return dg.AssetCheckResult(
        check_name=CHECK_COMPLETENESS,
        passed=flagged.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "rule": dg.MetadataValue.text(
                f"fixed floor {floor:.0%} of minutes"
                if floor is not None
                else f"{RELATIVE_COMPLETENESS:.0%} of the ticker's typical share"
            ),
            "incomplete_sessions": dg.MetadataValue.int(len(flagged)),
            "share_complete": dg.MetadataValue.float(
                float(summary["bars"].sum() / max(_minutes(summary), 1))
            ),
            "worst_partitions": json_value(
                [
                    f"{r.session.date()}|{r.ticker}: {r.share:.0%} of minutes "
                    f"(expected ≥ {r.expected:.0%})"
                    for r in worst.itertuples()
                ]
            ),
        },
    )


def _reference_summary(engine: Engine, summary: pd.DataFrame) -> pd.DataFrame | None:
    """The session summary of the ``REFERENCE_SESSIONS`` stored sessions before the run's."""
    if summary.empty:
        return None
    first = summary["session"].min()
    days = calendar.sessions(
        calendar.session_before(first, REFERENCE_SESSIONS), calendar.session_before(first, 1)
    )
    tickers = sorted(summary["ticker"].unique())
    earlier = read_bars(engine, tickers, *calendar.span_of_days(days[0], days[-1]))
    return summarize_sessions(earlier, tickers, list(days))


def _minutes(summary: pd.DataFrame) -> int:
    return sum(len(calendar.session_minutes(d)) for d in summary["session"])


ingest_raw_bars_job = dg.define_asset_job(
    "ingest_raw_bars",
    selection=dg.AssetSelection.assets(raw_bars),
    description="Fetch and store raw 1-minute bars for a range of session × ticker partitions.",
)


# --- the gap backfill sensor -----------------------------------------------------------------
SENSOR_INTERVAL_S = 60
MAX_PARTITIONS_PER_TICK = 20
MAX_OPEN_ENTRIES = 2_000
MAX_ATTEMPTS = 3
LOST_AFTER_S = 30 * 60
GAP_IDS_TAG = "quant/gap_entries"
GAP_RUN_KEY_TAG = "quant/gap_run_key"  # the run key, as a tag of ours to find the run by

_WAITING = {
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.MANAGED,
    dg.DagsterRunStatus.CANCELING,
}
_FAILED = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


@dataclass
class GapCursor:
    """The sensor's memory: run key and attempt count of each open queue entry it handled."""

    run_keys: dict[int, str] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)

    @classmethod
    def load(cls, raw: str | None) -> Self:
        """Parse the stored cursor (an empty or unreadable one starts afresh)."""
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            return cls(
                run_keys={int(k): str(v) for k, v in data.get("run_keys", {}).items()},
                attempts={int(k): int(v) for k, v in data.get("attempts", {}).items()},
            )
        except (ValueError, TypeError, AttributeError):
            log.warning("unreadable gap_backfill_sensor cursor; starting afresh")
            return cls()

    def dump(self) -> str:
        """Serialize (sorted, so an unchanged state gives an identical string)."""
        return json.dumps(
            {
                "v": 1,
                "run_keys": {str(k): v for k, v in sorted(self.run_keys.items())},
                "attempts": {str(k): v for k, v in sorted(self.attempts.items())},
            },
            separators=(",", ":"),
        )

    def keep_only(self, open_ids: set[int]) -> None:
        """Forget entries that are no longer open (done, unfillable, deleted)."""
        self.run_keys = {k: v for k, v in self.run_keys.items() if k in open_ids}
        self.attempts = {k: v for k, v in self.attempts.items() if k in open_ids}


@dataclass
class TickSummary:
    """What one evaluation did (for the tick's skip message and logs)."""

    open_entries: int = 0
    partitions_examined: int = 0
    waiting: int = 0
    retried: int = 0
    done: int = 0
    unfillable: int = 0
    requested: int = 0
    gave_up: int = 0
    source_errors: int = 0

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.__dict__.items())


def run_key_for(partition_key: str, ids: list[int], attempt: int) -> str:
    """A run key naming the partition, the queue entries and the attempt (bounded length)."""
    listed = "-".join(str(i) for i in ids)
    if len(ids) > 8:
        digest = hashlib.sha1(listed.encode()).hexdigest()[:10]
        listed = f"{ids[0]}..{ids[-1]}x{len(ids)}.{digest}"
    return f"gap-backfill:{partition_key}:{listed}:a{attempt}"


def evaluate_backfills(
    instance: dg.DagsterInstance,
    engine: Engine,
    source: MarketSource,
    universe: list[str],
    cursor: GapCursor,
    now_s: float | None = None,
) -> tuple[list[dg.RunRequest], TickSummary]:
    """One tick of the sensor's logic (see the module docstring); mutates ``cursor``."""
    now_s = time.time() if now_s is None else now_s
    summary = TickSummary()
    open_entries = queue.entries(engine, queue.OPEN_STATUSES, limit=MAX_OPEN_ENTRIES)
    summary.open_entries = len(open_entries)
    cursor.keep_only({e.id for e in open_entries})
    requests: list[dg.RunRequest] = []
    for (ticker, day), group in queue.by_partition(open_entries).items():
        if summary.partitions_examined >= MAX_PARTITIONS_PER_TICK:
            break
        partition_key = str(day_ticker_key(day, ticker))
        if _exhausted(instance, cursor, group, partition_key):
            continue
        requested = [e for e in group if e.status == "requested"]
        if requested:
            verdict = _requested_verdict(instance, cursor, requested, partition_key, now_s)
            if verdict == "waiting":
                summary.waiting += len(requested)
                continue
            if verdict in ("failed", "lost"):
                summary.retried += len(requested)
                queue.set_status(
                    engine,
                    [e.id for e in requested],
                    "pending",
                    detail=f"backfill run {verdict}; will retry",
                )
        summary.partitions_examined += 1
        try:
            assessments = queue.assess(engine, source, group, universe)
        except Exception as err:
            summary.source_errors += 1
            log.warning(
                "gap backfill: could not check %s at the source (%s: %s); next tick",
                partition_key,
                type(err).__name__,
                err,
            )
            continue
        settled = queue.settle(engine, assessments)
        summary.done += settled["done"]
        summary.unfillable += settled["unfillable"]
        cursor.keep_only(
            set(cursor.attempts) - {a.entry.id for a in assessments if a.outcome != "missing"}
        )
        missing = sorted(a.entry.id for a in assessments if a.outcome == "missing")
        if not missing:
            continue
        request = _request(engine, cursor, partition_key, missing, summary)
        if request is not None:
            requests.append(request)
    return requests, summary


def _request(
    engine: Engine,
    cursor: GapCursor,
    partition_key: str,
    ids: list[int],
    summary: TickSummary,
) -> dg.RunRequest | None:
    attempt = 1 + max(cursor.attempts.get(i, 0) for i in ids)
    if attempt > MAX_ATTEMPTS:
        summary.gave_up += len(ids)
        queue.set_status(
            engine,
            ids,
            "pending",
            detail=f"still missing after {MAX_ATTEMPTS} backfill runs; run `quant backfill`",
        )
        return None
    if not day_ticker_partitions.has_partition_key(partition_key):
        summary.unfillable += len(ids)
        queue.set_status(
            engine, ids, "unfillable", detail=f"no raw_bars partition {partition_key} to backfill"
        )
        return None
    run_key = run_key_for(partition_key, ids, attempt)
    queue.set_status(engine, ids, "requested", detail=f"run key {run_key}")
    for i in ids:
        cursor.run_keys[i] = run_key
        cursor.attempts[i] = attempt
    summary.requested += len(ids)
    return dg.RunRequest(
        run_key=run_key,
        partition_key=partition_key,
        tags={GAP_IDS_TAG: ",".join(str(i) for i in ids)[:200], GAP_RUN_KEY_TAG: run_key},
    )


def _exhausted(
    instance: dg.DagsterInstance, cursor: GapCursor, group: list[GapEntry], partition_key: str
) -> bool:
    """All entries gave up (MAX_ATTEMPTS runs) and no run touched the partition since."""
    if any(e.status != "pending" or cursor.attempts.get(e.id, 0) < MAX_ATTEMPTS for e in group):
        return False
    since = max(e.updated_at for e in group)
    return not _materialized_by_run_since(instance, partition_key, since)


def _requested_verdict(
    instance: dg.DagsterInstance,
    cursor: GapCursor,
    requested: list[GapEntry],
    partition_key: str,
    now_s: float,
) -> str:
    """'waiting', 'ready' (a run finished: settle), 'failed' or 'lost' (retry)."""
    keys = {cursor.run_keys[e.id] for e in requested if e.id in cursor.run_keys}
    statuses = []
    for key in sorted(keys):
        runs = instance.get_runs(filters=dg.RunsFilter(tags={GAP_RUN_KEY_TAG: key}), limit=1)
        if runs:
            statuses.append(runs[0].status)
    if any(s in _WAITING for s in statuses):
        return "waiting"
    if any(s == dg.DagsterRunStatus.SUCCESS for s in statuses):
        return "ready"
    since = min(e.updated_at for e in requested)
    if _materialized_by_run_since(instance, partition_key, since):
        return "ready"  # a UI backfill, `quant backfill` or another run re-materialized it
    if any(s in _FAILED for s in statuses):
        return "failed"
    if now_s - since.timestamp() > LOST_AFTER_S:
        return "lost"
    return "waiting"


def _materialized_by_run_since(
    instance: dg.DagsterInstance, partition_key: str, since: pd.Timestamp
) -> bool:
    """Whether a run (not the poller's runless reports) materialized the partition since then."""
    records_filter = dg.AssetRecordsFilter(
        asset_key=raw_bars.key, asset_partitions=[partition_key], after_timestamp=since.timestamp()
    )
    page_cursor = None
    while True:
        page = instance.fetch_materializations(records_filter, limit=100, cursor=page_cursor)
        if any(r.run_id for r in page.records):  # a runless event has an empty run id
            return True
        if not page.has_more:
            return False
        page_cursor = page.cursor


@dg.sensor(
    job=ingest_raw_bars_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Backfills the minutes the live poller missed: reads backfill_queue, settles no-trade "
        "gaps against the source, launches one raw_bars run per day × ticker partition that "
        "lacks bars the source has, and marks entries done / unfillable once confirmed."
    ),
)
def gap_backfill_sensor(
    context: dg.SensorEvaluationContext,
    database: DatabaseResource,
    market: MarketSourceResource,
) -> dg.SensorResult | dg.SkipReason:
    """Queue → RunRequests (see the module docstring)."""
    cursor = GapCursor.load(context.cursor)
    try:
        requests, summary = evaluate_backfills(
            context.instance, database.engine, market.get_source(), list(market.tickers), cursor
        )
    except (DatabaseUnavailableError, SQLAlchemyError) as err:
        # Nothing is launched; entries this tick already marked `requested` count as lost
        # after LOST_AFTER_S and are requested again.
        message = f"database {database.describe()} unavailable ({type(err).__name__}); next tick"
        context.log.warning(message)
        return dg.SensorResult(skip_reason=dg.SkipReason(message), cursor=cursor.dump())
    context.log.info(f"gap backfill tick: {summary}")
    if not requests:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(f"no partition to backfill ({summary})"),
            cursor=cursor.dump(),
        )
    return dg.SensorResult(run_requests=requests, cursor=cursor.dump())


# --- after the close -----------------------------------------------------------------------
@dg.op(description="Fill the queued gaps of the day: re-ingest partitions the source has bars for.")
def fill_queued_gaps(
    context: dg.OpExecutionContext, database: DatabaseResource, market: MarketSourceResource
) -> None:
    """The after-hours path of the backfill queue (the same as `quant backfill`)."""
    engine = database.engine
    source = market.get_source()
    todo = queue.entries(engine)

    def run_partition(ticker: str, day: pd.Timestamp, _items: list) -> bool:
        ingest_sessions(source, engine, ticker, [day])
        return True

    report = queue.backfill(engine, source, market.tickers, todo, run_partition)
    context.log.info(f"after-close backfill: {report}")


@dg.job(description="After the close: settle the gap queue, re-ingesting what the source has.")
def gap_backfill_job() -> None:
    """Runs fill_queued_gaps."""
    fill_queued_gaps()


after_close_backfill_schedule = dg.ScheduleDefinition(
    name="after_close_backfill_schedule",
    job=gap_backfill_job,
    cron_schedule="30 16 * * 1-5",
    execution_timezone=calendar.MARKET_TZ,
    description="16:30 New York on weekdays: fill the minutes the live poller missed.",
)
