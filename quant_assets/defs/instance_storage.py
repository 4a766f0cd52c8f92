"""Dagster's instance storages holding their connections open instead of opening one per call.

Dagster's storages open a connection for every call (two for each asset event: the event row,
then the asset index) so that long-lived processes with many instances do not accumulate
connections. A run worker holds one instance and stores one event per partition it
materializes, so those set-ups were most of a partitioned run's overhead: 1.5 s of a 9 s
``daily_tables`` run over 45 days went on its 138 "materialization planned" events alone on
PostgreSQL (a server process forked and a SCRAM handshake, 3–5 ms each), 1.6 s of it on the
SQLite files (a new SQLAlchemy engine and connection per event).

``PooledPostgresStorage`` is the ``storage: postgres:`` storage, configured the same way (under
``storage: custom:``), whose run, event-log and schedule storages each keep one connection per
process, opening more only while threads need them at once. The pools are the ones
dagster-webserver sets up for itself (``optimize_for_webserver``), without its statement timeout.

``PooledSqliteStorage`` is the default SQLite storage (``storage: sqlite:``, with ``base_dir``)
whose event log keeps an engine and one open connection for each of the few database files it
used last (the index and recent runs' files), under the event log's own lock as before. It
replaces ``SqliteEventLogStorage._connect``, a private method of Dagster 1.13, and takes the
event logs' folder from Dagster's private ``_event_logs_directory`` (the version the project
pins; ``quant_assets_tests/defs/test_instance_storage.py`` fails if either changes).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.pool import QueuePool

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dagster._serdes import ConfigurableClassData
    from dagster_postgres.auth import PgTokenProvider

# A pooled connection older than this is replaced (a server may drop idle connections).
POOL_RECYCLE_S = 3600
# Connections beyond the pooled one, opened while more threads need one at once (the daemon's
# sensor and schedule workers) and closed when returned.
MAX_OVERFLOW = 10
NO_STATEMENT_TIMEOUT = 0
# SQLite database files whose engine the event log keeps (the index and recent runs' files).
KEPT_SQLITE_FILES = 8


class PooledPostgresStorage(DagsterPostgresStorage):
    """dagster-postgres' storage keeping one open connection per storage and process."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: PgTokenProvider | None = None,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        # dagster-webserver pools them again with its own settings; the engines it replaces
        # are referenced by nothing else: their connections close when they are collected.
        for storage in (self.run_storage, self.event_log_storage, self.schedule_storage):
            storage.optimize_for_webserver(
                statement_timeout=NO_STATEMENT_TIMEOUT,
                pool_recycle=POOL_RECYCLE_S,
                max_overflow=MAX_OVERFLOW,
            )

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledPostgresStorage:
        return cls(
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            inst_data=inst_data,
            token_provider=get_token_provider_from_config(config_value),
        )


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` keeping an engine and an open connection per recent file."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        super().__init__(base_dir, inst_data)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine_for(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _engine_for(self, shard: str) -> Engine:
        """The shard's engine, made on first use; the least recently used beyond
        ``KEPT_SQLITE_FILES`` are closed."""
        engine = self._engines.pop(shard, None)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=QueuePool,
                pool_size=1,
                max_overflow=2,  # a first use creates the tables on a second connection
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
        self._engines[shard] = engine
        while len(self._engines) > KEPT_SQLITE_FILES:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    def _close_engines(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        self._close_engines()  # the files are deleted
        super().wipe()

    def dispose(self) -> None:
        self._close_engines()
        super().dispose()


class PooledSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage with ``PooledSqliteEventLogStorage`` as its event log."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(base_dir, inst_data)
        self._event_log_storage.dispose()
        self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)
