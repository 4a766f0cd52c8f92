"""One production stack (``quant_assets.production.stack``) for this folder's tests.

Started on the first test that asks for it (a throw-away PostgreSQL, the daemon, webserver,
code server, poller and MLflow), stopped after the last one even when a test failed; the stop
must leave no process and no PostgreSQL cluster behind and no log may hold the password.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from quant_assets.production.stack import ProductionStack, marked_processes, port_open
from quant_assets.settings import Settings
from quant_assets.storage.database import create_db_engine
from quant_assets_tests.ingestion.helpers import TICKERS

START_TIMEOUT_S = 240
# The live poller serves a ticker of its own. A ticker the tests plant history for would be
# polled from its newest planted bar: in market hours that queues every session since as a
# gap, and the daemon's gap runs then hold the one big_tables slot for the rest of the tests.
POLLED = "TSLA"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionStack]:
    """The running stack; the services see the test market's tickers and the poller's own."""
    state_dir = tmp_path_factory.mktemp("production")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("QUANT_TICKERS", ",".join([*TICKERS, POLLED]))
        if sys.pycache_prefix:  # the services' bytecode goes where the suite's does
            env.setenv("PYTHONPYCACHEPREFIX", sys.pycache_prefix)
        env.delenv("QUANT_PRODUCTION_PG_URL", raising=False)
        for name in ("QUANT_DATABASE_URL", "MLFLOW_TRACKING_URI", "QUANT_SOURCE"):
            env.delenv(name, raising=False)
        production = ProductionStack(state_dir, poller_tickers=[POLLED])
        try:
            production.start(timeout_s=START_TIMEOUT_S)
            password = str(production._server_url().password)
            ports = dict(production.state()["ports"])
            pg = dict(production.state()["postgres"])
            yield production
        finally:
            killed = production.stop()
    assert not killed, f"services that ignored SIGTERM: {killed}"
    assert not marked_processes(production.state_dir), "processes left behind"
    assert not port_open(ports["webserver"]) and not port_open(pg["port"])
    assert not Path(pg["root"]).exists(), "the throw-away cluster was not removed"
    for log in production.logs.glob("*.log"):
        assert password not in log.read_text(errors="replace"), f"password in {log.name}"


@pytest.fixture(scope="session")
def bars_db(stack: ProductionStack) -> Iterator[Engine]:
    """An engine on the stack's bars database (the one its services write)."""
    url = stack.database_url("bars").render_as_string(hide_password=False)
    settings = Settings(home=stack.quant_home, database_url=SecretStr(url), _env_file=None)
    engine = create_db_engine(settings)
    yield engine
    engine.dispose()
