"""Dagster's PostgreSQL storage holding its connections open instead of opening one per call.

dagster-postgres opens a new connection for every call of its storages (two for each asset
event: the event row, then the asset index) so that long-lived processes with many instances do
not accumulate connections. A run worker holds one instance and stores one event per partition
it materializes, so those connection set-ups (a server process forked and a SCRAM handshake,
3–5 ms each here) were most of a partitioned run's overhead: 1.5 s of a 9 s ``daily_tables``
run over 45 days went on its 138 "materialization planned" events alone.

``PooledPostgresStorage`` is the ``storage: postgres:`` storage, configured the same way (under
``storage: custom:``), whose run, event-log and schedule storages each keep one connection per
process, opening more only while threads need them at once. The pools are the ones
dagster-webserver sets up for itself (``optimize_for_webserver``), without its statement timeout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

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
