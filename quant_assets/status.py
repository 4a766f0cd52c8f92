"""``quant status``: how fresh the data is, what waits in the gap queue, who serves, any drift.

``gather_status`` collects everything as plain data (``StatusReport``, JSON-ready through
``to_dict``); ``render_status`` draws it with rich tables for a person at a terminal. Every
part has a "none yet" form, so the command works on an empty database and a fresh home:

* freshness per configured ticker: newest bar in ``price_data`` and its age, newest row of
  ``adjusted_bars``, ``features`` and ``labels`` (one indexed ``max(ts)`` per ticker and table,
  cheap on a big PostgreSQL table);
* the backfill queue: entries per status (``backfill_queue.status_counts``) and the minutes
  still open (pending + requested);
* the champion in ``model_config.json`` (``deployment.registry``): name, when and why it was
  promoted, its validation metrics; a registry that cannot be read is reported, not raised;
* the latest drift evaluation (``monitoring.drift_monitor.latest_evaluation``);
* coverage of the last ``COVERAGE_SESSIONS`` completed sessions per ticker
  (``market.coverage``): share of minutes with a bar, holes and truncated sessions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Engine, func, select

from quant_assets.deployment.champion import NO_CHAMPION
from quant_assets.deployment.registry import ModelRegistry
from quant_assets.ingestion import backfill_queue as queue
from quant_assets.market import calendar
from quant_assets.market.coverage import TickerCoverage, summarize_sessions, ticker_coverage
from quant_assets.monitoring.drift_monitor import latest_evaluation
from quant_assets.settings import Settings
from quant_assets.storage.bars import read_bars
from quant_assets.storage.database import get_engine, to_utc
from quant_assets.storage.schema import adjusted_bars, features, labels, price_data

NONE_YET = "none yet"
QUEUE_STATUSES: tuple[str, ...] = ("pending", "requested", "done", "unfillable")
_REASON_CHARS = 160
COVERAGE_SESSIONS = 10


@dataclass(frozen=True)
class TickerFreshness:
    """Newest stored row of one ticker in each table (None: no row yet)."""

    ticker: str
    last_bar: pd.Timestamp | None
    last_adjusted: pd.Timestamp | None
    last_feature: pd.Timestamp | None
    last_label: pd.Timestamp | None
    bar_age: pd.Timedelta | None

    @property
    def has_data(self) -> bool:
        return any(
            t is not None
            for t in (self.last_bar, self.last_adjusted, self.last_feature, self.last_label)
        )


@dataclass(frozen=True)
class QueueStatus:
    """Backfill queue entries per status, and the minutes still open."""

    counts: dict[str, int]
    open_minutes: int

    @property
    def empty(self) -> bool:
        return not any(self.counts.values())


@dataclass(frozen=True)
class ChampionStatus:
    """The registry's champion; ``state`` as ``RegistryStatus.state``."""

    state: str
    message: str
    name: str | None = None
    promoted_at: pd.Timestamp | None = None
    promoted_reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    revision: int | None = None
    previous: tuple[str, ...] = ()


@dataclass(frozen=True)
class DriftStatus:
    """The newest drift report (None fields: no report yet)."""

    level: str | None
    at: pd.Timestamp | None = None
    details: dict[str, Any] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class StatusReport:
    """Everything ``quant status`` shows."""

    generated_at: pd.Timestamp
    database: str  # password masked
    model_config_path: str
    tickers: tuple[TickerFreshness, ...]
    queue: QueueStatus
    champion: ChampionStatus
    drift: DriftStatus
    coverage: tuple[TickerCoverage, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (timestamps as ISO text, ages in seconds)."""
        return _jsonable(asdict(self))


def gather_status(
    settings: Settings,
    engine: Engine | None = None,
    now: pd.Timestamp | None = None,
    tickers: Sequence[str] | None = None,
) -> StatusReport:
    """Collect the status of the configured database and home (see the module docstring)."""
    if engine is None:
        engine = get_engine(settings)
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now).tz_convert("UTC")
    return StatusReport(
        generated_at=now,
        database=settings.safe_url(),
        model_config_path=str(settings.model_config_path),
        tickers=tuple(freshness(engine, tickers or settings.tickers, now)),
        queue=queue_status(engine),
        champion=champion_status(settings),
        drift=drift_status(engine),
        coverage=tuple(recent_coverage(engine, tickers or settings.tickers, now)),
    )


def recent_coverage(
    engine: Engine, tickers: Sequence[str], now: pd.Timestamp
) -> list[TickerCoverage]:
    """Coverage of the last ``COVERAGE_SESSIONS`` sessions completed by ``now``."""
    last = calendar.session_before(calendar.session_of(now), 0)
    if not calendar.is_session(last) or now < calendar.session_bounds(last)[1]:
        last = calendar.session_before(last, 1)
    days = list(calendar.sessions(calendar.session_before(last, COVERAGE_SESSIONS - 1), last))
    bars = read_bars(engine, list(tickers), *calendar.span_of_days(days[0], days[-1]))
    return ticker_coverage(summarize_sessions(bars, tickers, days))


def freshness(engine: Engine, tickers: Sequence[str], now: pd.Timestamp) -> list[TickerFreshness]:
    """Newest row per ticker in price_data, adjusted_bars, features and labels."""
    tables = (price_data, adjusted_bars, features, labels)
    out = []
    with engine.connect() as conn:
        for ticker in tickers:
            last = []
            for table in tables:
                value = conn.execute(
                    select(func.max(table.c.ts)).where(table.c.ticker == ticker)
                ).scalar()
                last.append(None if value is None else _utc(value))
            out.append(
                TickerFreshness(
                    ticker=ticker,
                    last_bar=last[0],
                    last_adjusted=last[1],
                    last_feature=last[2],
                    last_label=last[3],
                    bar_age=None if last[0] is None else now - last[0],
                )
            )
    return out


def queue_status(engine: Engine) -> QueueStatus:
    """Entries per status (every status listed, 0 when none) and the open minutes."""
    counts = queue.status_counts(engine)
    ordered = {s: counts.get(s, 0) for s in QUEUE_STATUSES}
    ordered.update({s: n for s, n in counts.items() if s not in ordered})
    open_entries = (
        queue.entries(engine, queue.OPEN_STATUSES)
        if any(ordered.get(s) for s in queue.OPEN_STATUSES)
        else []
    )
    return QueueStatus(ordered, sum(e.minutes for e in open_entries))


def champion_status(settings: Settings) -> ChampionStatus:
    """The champion from ``model_config.json``; never raises for a missing or bad file."""
    status = ModelRegistry.from_settings(settings).status()
    cfg = status.config
    if cfg is None or cfg.champion is None:
        message = NO_CHAMPION if status.ok else status.message
        return ChampionStatus(status.state, message, revision=cfg.revision if cfg else None)
    champ = cfg.champion
    return ChampionStatus(
        state=status.state,
        message=status.message,
        name=champ.model.name,
        promoted_at=pd.Timestamp(champ.promoted_at).tz_convert("UTC"),
        promoted_reason=champ.promoted_reason,
        metrics=dict(champ.metrics),
        revision=cfg.revision,
        previous=tuple(h.model.name for h in reversed(cfg.history)),
    )


def drift_status(engine: Engine) -> DriftStatus:
    """The newest drift evaluation, or "no drift report yet"."""
    row = latest_evaluation(engine)
    if row is None:
        return DriftStatus(None, message="no drift report yet")
    details = {
        "model": row.model,
        "share_drifted": row.share_drifted,
        "rollback": row.rollback,
        "reason": row.reason,
    }
    return DriftStatus(
        row.level,
        at=row.evaluated_at,
        details={k: v for k, v in details.items() if v is not None},
        message="latest report not evaluated (too few rows)" if row.level is None else "",
    )


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
_LEVEL_STYLE = {"ok": "green", "none": "green", "warn": "yellow", "warning": "yellow"}


def render_status(report: StatusReport, console: Console) -> None:
    """Draw the report for a terminal."""
    console.print(
        f"[bold]quant status[/bold]  {_fmt_ts(report.generated_at)}  database {report.database}"
    )
    _render_freshness(report, console)
    _render_queue(report.queue, console)
    _render_champion(report.champion, report.model_config_path, console)
    _render_drift(report.drift, console)
    _render_coverage(report.coverage, console)


def _render_coverage(coverage: Sequence[TickerCoverage], console: Console) -> None:
    flagged = [c for c in coverage if c.holes or c.truncated]
    if not any(c.bars for c in coverage):
        return
    shares = [c.minute_share for c in coverage if c.bars]
    head = (
        f"coverage (last {COVERAGE_SESSIONS} sessions): minutes with a bar "
        f"{min(shares):.0%}–{max(shares):.0%}"
    )
    if not flagged:
        console.print(f"{head}; no holes, no truncated sessions")
        return
    console.print(f"{head}; {len(flagged)} ticker(s) with holes or truncated sessions:")
    for c in flagged:
        console.print(f"  {escape(c.describe())}")


def _render_freshness(report: StatusReport, console: Console) -> None:
    if not any(t.has_data for t in report.tickers):
        console.print(
            f"data freshness: {NONE_YET} (no bars for the {len(report.tickers)} configured "
            "tickers; `quant demo` or `quant ingest` stores some)"
        )
        return
    table = Table(title="data freshness (UTC)")
    for col in ("ticker", "last bar", "age", "last adjusted", "last feature", "last label"):
        table.add_column(col, justify="right" if col == "age" else "left")
    for t in report.tickers:
        table.add_row(
            t.ticker,
            _fmt_ts(t.last_bar),
            _fmt_age(t.bar_age),
            _fmt_behind(t.last_adjusted, t.last_bar),
            _fmt_behind(t.last_feature, t.last_bar),
            _fmt_behind(t.last_label, t.last_bar),
        )
    console.print(table)


def _render_queue(queue: QueueStatus, console: Console) -> None:
    if queue.empty:
        console.print(f"backfill queue (missed minutes): {NONE_YET}")
        return
    table = Table(title="backfill queue (missed minutes)")
    table.add_column("status")
    table.add_column("entries", justify="right")
    for status, n in queue.counts.items():
        table.add_row(status, f"{n:,}")
    table.add_row("[bold]open minutes[/bold]", f"{queue.open_minutes:,}")
    console.print(table)


def _render_champion(champ: ChampionStatus, path: str, console: Console) -> None:
    if champ.name is None:
        style = "" if champ.state in ("ok", "first_run") else "[red]"
        console.print(f"champion: {style}{escape(champ.message)}")
        return
    table = Table(title=f"champion {champ.name}  (model_config.json revision {champ.revision})")
    table.add_column("field")
    table.add_column("value")
    table.add_row("promoted", _fmt_ts(champ.promoted_at))
    table.add_row("why", escape(champ.promoted_reason or ""))
    for name, value in champ.metrics.items():
        table.add_row(name, f"{value:.4f}")
    table.add_row("previous stable", ", ".join(champ.previous) or NONE_YET)
    if champ.state != "ok":
        table.add_row("[red]registry", f"[red]{escape(champ.message)}")
    table.caption = path
    console.print(table)


def _render_drift(drift: DriftStatus, console: Console) -> None:
    if drift.level is None:
        console.print(f"drift: {escape(drift.message or 'no drift report yet')}")
        return
    style = _LEVEL_STYLE.get(drift.level.lower(), "red")
    extra = escape(", ".join(f"{k} {_fmt_value(v)}" for k, v in drift.details.items()))
    when = f" at {_fmt_ts(drift.at)}" if drift.at is not None else ""
    console.print(
        f"drift: [{style}]{drift.level}[/{style}]{when}" + (f" ({extra})" if extra else "")
    )


def _fmt_ts(ts: pd.Timestamp | None) -> str:
    return NONE_YET if ts is None else ts.tz_convert("UTC").strftime("%Y-%m-%d %H:%M")


def _fmt_age(age: pd.Timedelta | None) -> str:
    if age is None:
        return "-"
    seconds = int(age.total_seconds())
    if seconds < 0:
        return "in the future"
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


def _fmt_behind(ts: pd.Timestamp | None, last_bar: pd.Timestamp | None) -> str:
    """A derived table's newest row, and how far it trails the newest raw bar."""
    if ts is None:
        return NONE_YET
    text = _fmt_ts(ts)
    if last_bar is not None and last_bar > ts:
        text += f" [yellow](-{_fmt_age(last_bar - ts)})[/yellow]"
    return text


def _fmt_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def _utc(value: object) -> pd.Timestamp:
    return to_utc(pd.Series([value], dtype="object")).iloc[0]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, pd.Timedelta):
        return value.total_seconds()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.loads(json.dumps(value, default=str))
