"""Shared fixtures: a throw-away PostgreSQL server for the session, and per-test databases.

The suite writes nothing into the source tree: bytecode and numba's compiled-function cache go
under the system's temporary directory (``make test`` sets the same through the environment,
which also covers this file), so do hypothesis's files (it keeps no example database), and
pytest keeps no cache (``-p no:cacheprovider`` in pyproject.toml).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

_CACHE = Path(tempfile.gettempdir()) / "quant_assets-test-cache"
sys.pycache_prefix = sys.pycache_prefix or str(_CACHE / "pycache")
os.environ.setdefault("NUMBA_CACHE_DIR", str(_CACHE / "numba"))  # before numba is imported
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(_CACHE / "hypothesis"))  # read lazily

from collections.abc import Iterator

import pytest
from hypothesis import settings as hypothesis_settings
from pydantic import SecretStr
from sqlalchemy import Engine

from quant_assets.settings import Settings
from quant_assets.storage.database import create_db_engine, dispose_engines
from quant_assets.storage.ephemeral_postgres import EphemeralPostgres
from quant_assets_tests.helpers import new_pg_database

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]

hypothesis_settings.register_profile("quant_assets", database=None)  # no .hypothesis/ folder
hypothesis_settings.load_profile("quant_assets")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EphemeralPostgres]:
    """One real PostgreSQL server for the whole test session, started here and removed after."""
    server = EphemeralPostgres(database="postgres").start()
    yield server
    server.stop()


@pytest.fixture
def settings_for(request: pytest.FixtureRequest, tmp_path):
    """Build Settings for a backend name, isolated under tmp_path."""

    def build(backend: str, **overrides: object) -> Settings:
        if backend == "sqlite":
            return Settings(home=tmp_path / "home", _env_file=None, **overrides)
        server = request.getfixturevalue("pg_server")
        url = new_pg_database(server)
        return Settings(
            home=tmp_path / "home", database_url=SecretStr(url), _env_file=None, **overrides
        )

    return build


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each storage test runs on SQLite and on the real PostgreSQL server."""
    return request.param


@pytest.fixture
def settings(backend: str, settings_for) -> Settings:
    """Settings pointing at a fresh database of the test's backend."""
    return settings_for(backend)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """An engine on a fresh database with the schema created."""
    eng = create_db_engine(settings)
    yield eng
    eng.dispose()


@pytest.fixture
def quant_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[Settings]:
    """Point the process environment (as Dagster resources read it) at the test database."""
    monkeypatch.setenv("QUANT_HOME", str(settings.home))
    if settings.database_url is not None:
        monkeypatch.setenv("QUANT_DATABASE_URL", settings.database_url.get_secret_value())
    else:
        monkeypatch.delenv("QUANT_DATABASE_URL", raising=False)
    for name in ("DB_HOST", "DB_USER", "DB_PASSWORD", "DB_NAME", "DB_PORT"):
        monkeypatch.delenv(name, raising=False)
    yield settings
    dispose_engines()


@pytest.fixture(autouse=True)
def no_leftover_defs_state_storage() -> Iterator[None]:
    """Each test starts with no current defs-state storage. A DagsterInstance sets its own as
    the current one while entered (a context variable); instances exited out of order leave a
    dead one behind, and building Definitions in a later test then fails with "Attempted to
    resolve undefined DagsterInstance weakref" — in some orders of the tests only."""
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield
