"""``gap_backfill_sensor``: turn the live poller's backfill queue into ``raw_bars`` partition runs.

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
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd
from dagster._core.instance.utils import RUNLESS_RUN_ID
from dagster._core.storage.tags import RUN_KEY_TAG
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from quant_assets.defs.jobs import ingest_raw_bars_job
from quant_assets.defs.partitions import day_ticker_key, day_ticker_partitions
from quant_assets.defs.resources import DatabaseResource, MarketSourceResource
from quant_assets.ingestion import backfill_queue as queue
from quant_assets.ingestion.backfill_queue import GapEntry
from quant_assets.market.sources import MarketSource
from quant_assets.storage.database import DatabaseUnavailableError

log = logging.getLogger(__name__)

SENSOR_INTERVAL_S = 60
MAX_PARTITIONS_PER_TICK = 20
MAX_OPEN_ENTRIES = 2_000
MAX_ATTEMPTS = 3
LOST_AFTER_S = 30 * 60
RAW_BARS = dg.AssetKey("raw_bars")
GAP_IDS_TAG = "quant/gap_entries"

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
    def load(cls, raw: str | None) -> GapCursor:
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
        tags={GAP_IDS_TAG: ",".join(str(i) for i in ids)[:200]},
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
        runs = instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: key}), limit=1)
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
        asset_key=RAW_BARS, asset_partitions=[partition_key], after_timestamp=since.timestamp()
    )
    page_cursor = None
    while True:
        page = instance.fetch_materializations(records_filter, limit=100, cursor=page_cursor)
        if any(r.run_id != RUNLESS_RUN_ID for r in page.records):
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
