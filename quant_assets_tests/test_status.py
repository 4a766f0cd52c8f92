"""``quant status``: freshness, backfill queue, champion and drift, from empty to populated."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from rich.console import Console
from sqlalchemy import Column, DateTime, Engine, Float, Integer, MetaData, String, Table, insert

from quant_assets.cli import main
from quant_assets.deployment.champion import NO_CHAMPION
from quant_assets.deployment.registry import ModelRegistry
from quant_assets.ingestion import backfill_queue as queue
from quant_assets.ingestion.gaps import Gap
from quant_assets.settings import Settings
from quant_assets.status import NONE_YET, StatusReport, gather_status, render_status
from quant_assets.storage.database import get_engine, read_from_db
from quant_assets.storage.schema import TABLES
from quant_assets_tests.deployment.helpers import make_model_file
from quant_assets_tests.helpers import populate

NOW = pd.Timestamp("2026-09-08 14:00", tz="UTC")
TICKERS = ("AAPL", "MSFT")


# Values for the NOT NULL columns of the schema's drift_reports table (the monitoring layer's).
DRIFT_REQUIRED = {
    "model": "lstm_v1",
    "reason": "share of drifted features 0.65 >= 0.5",
    "report": "{}",
    "rollback": False,
    "decision": "{}",
}


def drift_table(engine: Engine) -> Table:
    """The drift_reports table: the schema's when it has one, else a minimal one made here."""
    if "drift_reports" in TABLES:
        return TABLES["drift_reports"]
    table = Table(
        "drift_reports",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("evaluated_at", DateTime(timezone=True), nullable=False),
        Column("level", String(16)),
        Column("share_drifted", Float),
    )
    table.create(engine)
    return table


def gap(start: str, end: str) -> Gap:
    day = "2026-09-04 "
    return Gap("AAPL", pd.Timestamp(day + start, tz="UTC"), pd.Timestamp(day + end, tz="UTC"))


def rendered(report: StatusReport) -> str:
    console = Console(record=True, width=160, color_system=None)
    render_status(report, console)
    return console.export_text()


def test_empty_database_says_none_yet(settings: Settings, engine: Engine) -> None:
    report = gather_status(settings, engine, now=NOW, tickers=TICKERS)
    assert [t.ticker for t in report.tickers] == list(TICKERS)
    assert not any(t.has_data for t in report.tickers)
    assert report.queue.empty and report.queue.open_minutes == 0
    assert report.champion.name is None and report.champion.state == "first_run"
    assert report.drift.level is None
    text = rendered(report)
    assert f"data freshness: {NONE_YET}" in text
    assert f"backfill queue (missed minutes): {NONE_YET}" in text
    assert f"champion: {NO_CHAMPION}" in " ".join(text.split())  # wrapped to the width
    assert "drift: no drift report yet" in text and "coverage" not in text
    json.dumps(report.to_dict())  # JSON-ready


def test_freshness_queue_and_drift_of_a_populated_database(
    settings: Settings, engine: Engine
) -> None:
    populate(engine, tickers=("AAPL",))
    gaps = [gap("14:00", "14:03"), gap("15:00", "15:02"), gap("16:00", "16:01")]
    assert queue.enqueue_gaps(engine, gaps) == 3
    (done,) = queue.entries(engine, limit=1)
    queue.set_status(engine, [done.id], "done")
    drift = drift_table(engine)
    extra = {k: v for k, v in DRIFT_REQUIRED.items() if k in drift.c}
    rows = [("2026-09-04 15:00", "none", 0.0), ("2026-09-04 16:00", "severe", 0.65)]
    with engine.begin() as conn:
        conn.execute(
            insert(drift),
            [
                {"evaluated_at": pd.Timestamp(at, tz="UTC").to_pydatetime(), "level": level,
                 "share_drifted": share, **extra}
                for at, level, share in rows
            ],
        )  # fmt: skip

    report = gather_status(settings, engine, now=NOW, tickers=TICKERS)
    aapl, msft = report.tickers
    stored = {
        table: read_from_db(
            f"SELECT max(ts) AS ts FROM {table} WHERE ticker = 'AAPL'", engine, utc_columns=["ts"]
        )["ts"].iloc[0]
        for table in ("price_data", "adjusted_bars", "features", "labels")
    }
    assert (
        aapl.last_bar == stored["price_data"] and aapl.last_bar.date().isoformat() == "2026-09-04"
    )
    assert aapl.last_adjusted == stored["adjusted_bars"] == aapl.last_bar
    assert aapl.last_feature == stored["features"] == aapl.last_bar
    assert aapl.last_label == stored["labels"] and aapl.last_label < aapl.last_bar  # a day behind
    assert aapl.bar_age == NOW - aapl.last_bar
    assert not msft.has_data and msft.bar_age is None
    assert report.queue.counts == {"pending": 2, "requested": 0, "done": 1, "unfillable": 0}
    assert report.queue.open_minutes == 6 - done.minutes
    assert report.drift.level == "severe" and report.drift.details["share_drifted"] == 0.65
    assert report.drift.at == pd.Timestamp("2026-09-04 16:00", tz="UTC")

    text = rendered(report)
    assert "data freshness (UTC)" in text and "2026-09-04" in text
    assert "AAPL" in text and "MSFT" in text and NONE_YET in text
    assert "open minutes" in text and "drift: severe at 2026-09-04 16:00" in text
    assert json.loads(json.dumps(report.to_dict()))["queue"]["counts"]["pending"] == 2
    # coverage of the 10 sessions completed by NOW (2026-08-24 … 2026-09-04)
    cov = {c.ticker: c for c in report.coverage}
    assert cov["AAPL"].sessions == 10 and cov["AAPL"].sessions_with_bars == 4
    assert [(h.first.date().isoformat(), h.sessions) for h in cov["AAPL"].holes] == [
        ("2026-08-24", 6)
    ]
    assert cov["AAPL"].minute_share > 0.99 and cov["MSFT"].bars == 0
    assert "coverage (last 10 sessions)" in text
    assert "AAPL: 4/10 sessions, 100% of minutes; holes 2026-08-24…2026-08-31" in text


@pytest.mark.parametrize("backend", ["sqlite"])
def test_champion_and_its_metrics(settings: Settings, engine: Engine, backend: str) -> None:
    registry = ModelRegistry.from_settings(settings)
    lstm = make_model_file(settings.home, "lstm", 1)
    transformer = make_model_file(settings.home, "transformer", 2)
    registry.promote(lstm, reason="first model beats the baseline", metrics={"macro_f1": 0.31})
    registry.promote(
        transformer,
        reason="transformer_v2 beats lstm_v1",
        metrics={"macro_f1_updown": 0.412345, "log_loss": 1.02},
    )
    report = gather_status(settings, engine, now=NOW, tickers=TICKERS)
    champ = report.champion
    assert champ.state == "ok" and champ.name == "transformer_v2"
    assert champ.metrics == {"macro_f1_updown": 0.412345, "log_loss": 1.02}
    assert champ.previous == ("lstm_v1",) and champ.revision == 2
    text = rendered(report)
    assert "champion transformer_v2" in text and "macro_f1_updown" in text and "0.4123" in text
    assert "transformer_v2 beats lstm_v1" in text and "lstm_v1" in text


@pytest.mark.parametrize("backend", ["sqlite"])
def test_unreadable_registry_is_reported_not_raised(
    settings: Settings, engine: Engine, backend: str
) -> None:
    settings.model_config_path.parent.mkdir(parents=True)
    settings.model_config_path.write_text("{not json")
    report = gather_status(settings, engine, now=NOW, tickers=TICKERS)
    assert report.champion.state == "corrupt" and report.champion.name is None
    assert "champion:" in rendered(report)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_cli_on_an_empty_home(
    quant_env: Settings, capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert NO_CHAMPION in " ".join(out.split()) and "no drift report yet" in out and NONE_YET in out
    assert main(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["tickers"]) == len(quant_env.tickers)
    assert data["champion"]["name"] is None and data["drift"]["level"] is None
    assert get_engine(quant_env).dialect.name == "sqlite"
