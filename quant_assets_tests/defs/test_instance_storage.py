"""The instance storages the shipped dagster.yaml files name keep their connections open, where
Dagster's own open one or two per event: PooledPostgresStorage (the production and shared
instances) and PooledSqliteStorage (the embedded default)."""

from __future__ import annotations

import gc
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import dagster as dg
import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from quant_assets.defs.instance_storage import KEPT_SQLITE_FILES
from quant_assets.production.stack import INSTANCE_YAML
from quant_assets_tests.helpers import new_pg_database

EVENTS = 30


@pytest.fixture
def dagster_pg(pg_server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh database for Dagster's storage, named by the DAGSTER_PG_* variables."""
    url = make_url(new_pg_database(pg_server))
    for name, value in {
        "DAGSTER_PG_HOST": url.host,
        "DAGSTER_PG_PORT": str(url.port),
        "DAGSTER_PG_USER": url.username,
        "DAGSTER_PG_PASSWORD": url.password,
        "DAGSTER_PG_DB": url.database,
    }.items():
        monkeypatch.setenv(name, str(value))
    yield url.render_as_string(hide_password=False)


def _home(tmp_path: Path, storage: dict) -> str:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump({"storage": storage}))
    return str(home)


def _production_storage() -> dict:
    return yaml.safe_load(INSTANCE_YAML.read_text())["storage"]


def _plain_storage() -> dict:
    """The same connection settings under dagster-postgres' own ``storage: postgres:``."""
    return {"postgres": _production_storage()["custom"]["config"]}


def _sessions_opened(url: str, report: Iterator[None]) -> int:
    """Connections the server accepted into the database while ``report`` ran."""
    database = make_url(url).database
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    query = text("SELECT sessions FROM pg_stat_database WHERE datname = :name")
    try:
        with admin.connect() as conn:
            before = conn.execute(query, {"name": database}).scalar_one()
            for _ in report:
                pass
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            return int(conn.execute(query, {"name": database}).scalar_one()) - int(before)
    finally:
        admin.dispose()


def _report_events(instance: dg.DagsterInstance) -> Iterator[None]:
    for _ in range(EVENTS):
        instance.report_runless_asset_event(dg.AssetMaterialization("probe", partition=None))
        yield
    assert instance.fetch_materializations(dg.AssetKey("probe"), limit=EVENTS + 1).records


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("storage", "pooled"), [(_production_storage, True), (_plain_storage, False)]
)
def test_the_production_storage_keeps_its_connections_open(
    dagster_pg: str, tmp_path: Path, storage, pooled: bool
) -> None:
    with dg.DagsterInstance.from_config(_home(tmp_path, storage())) as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization("probe"))  # tables, pools
        opened = _sessions_opened(dagster_pg, _report_events(instance))
    if pooled:
        assert opened <= 2, f"{opened} connections for {EVENTS} events"
    else:  # dagster-postgres' own: the event, then the asset index, each on a new connection
        assert opened >= 2 * EVENTS


@pytest.mark.postgres
def test_a_run_worker_rebuilds_the_pooled_storage(dagster_pg: str, tmp_path: Path) -> None:
    """The instance a run worker makes from the instance ref pools its connections too, and a
    run on it stores its events."""

    @dg.asset
    def probe() -> None:
        return None

    with dg.DagsterInstance.from_config(_home(tmp_path, _production_storage())) as instance:
        worker = dg.DagsterInstance.from_ref(instance.get_ref())
        storages = (worker.run_storage, worker.event_log_storage, worker.schedule_storage)
        assert {type(s._engine.pool).__name__ for s in storages} == {"QueuePool"}
        assert dg.materialize([probe], instance=worker).success
        assert instance.get_latest_materialization_event(dg.AssetKey("probe")) is not None
        worker.dispose()


@pytest.mark.postgres
def test_the_webservers_own_pools_replace_ours_and_close_them(
    dagster_pg: str, tmp_path: Path
) -> None:
    """dagster-webserver pools the storages again: the connections held before are closed once
    the replaced engines are collected (a pool and its connection records form a cycle)."""
    admin = create_engine(
        make_url(dagster_pg).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    database = make_url(dagster_pg).database
    held = text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name")
    try:
        with dg.DagsterInstance.from_config(_home(tmp_path, _production_storage())) as instance:
            instance.report_runless_asset_event(dg.AssetMaterialization("probe"))
            with admin.connect() as conn:
                assert conn.execute(held, {"name": database}).scalar_one() >= 1
            instance.optimize_for_webserver(0, 3600, 10)
            gc.collect()
            deadline = time.monotonic() + 10  # a closed connection's server process exits
            with admin.connect() as conn:
                while conn.execute(held, {"name": database}).scalar_one():
                    assert time.monotonic() < deadline, "the replaced pools' connections stay"
                    time.sleep(0.05)
    finally:
        admin.dispose()


# --- the embedded default: PooledSqliteStorage --------------------------------------------------
SQLITE_YAML = Path(__file__).resolve().parents[2] / "dagster.sqlite.yaml"


@pytest.fixture
def sqlite_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A DAGSTER_HOME holding the shipped dagster.sqlite.yaml."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(SQLITE_YAML.read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return str(home)


def _sqlite_connections(instance: dg.DagsterInstance) -> int:
    """Connections sqlite3 opened while the probe events were stored."""
    opened = []
    real = sqlite3.dbapi2.connect  # what SQLAlchemy's pysqlite dialect calls

    def counted(*args, **kwargs):
        opened.append(args[0] if args else kwargs.get("database"))
        return real(*args, **kwargs)

    with mock.patch.object(sqlite3.dbapi2, "connect", counted):
        for _ in _report_events(instance):
            pass
    return len(opened)


@pytest.mark.parametrize("pooled", [True, False])
def test_the_default_sqlite_storage_keeps_its_connections_open(
    sqlite_home: str, pooled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not pooled:  # Dagster's own storage in the same place: no storage section
        config = yaml.safe_load(SQLITE_YAML.read_text())
        del config["storage"]
        Path(sqlite_home, "dagster.yaml").write_text(yaml.safe_dump(config))
    with dg.DagsterInstance.get() as instance:
        kind = type(instance.event_log_storage).__name__
        assert kind == ("PooledSqliteEventLogStorage" if pooled else "SqliteEventLogStorage")
        instance.report_runless_asset_event(dg.AssetMaterialization("probe"))
        opened = _sqlite_connections(instance)
    if pooled:
        assert opened == 0, f"{opened} connections for {EVENTS} events"
    else:  # the run's file and the index, each on a new connection per event
        assert opened >= 2 * EVENTS


def test_runs_on_the_pooled_sqlite_storage_keep_few_files_open_and_all_readable(
    sqlite_home: str,
) -> None:
    @dg.asset
    def probe() -> None:
        return None

    with dg.DagsterInstance.get() as instance:
        worker = dg.DagsterInstance.from_ref(instance.get_ref())
        assert type(worker.event_log_storage).__name__ == "PooledSqliteEventLogStorage"
        runs = [dg.materialize([probe], instance=worker) for _ in range(KEPT_SQLITE_FILES + 3)]
        assert all(r.success for r in runs)
        events = worker.event_log_storage
        assert len(events._engines) <= KEPT_SQLITE_FILES  # type: ignore[attr-defined]
        for run in runs:  # the files closed in between read again
            assert any(
                e.dagster_event_type == dg.DagsterEventType.RUN_SUCCESS
                for e in instance.all_logs(run.run_id)
            )
        instance.wipe()
        worker.wipe()
        assert set(events._engines) <= {"index"}  # type: ignore[attr-defined]  # runs' files gone
        assert dg.materialize([probe], instance=worker).success
        worker.dispose()
