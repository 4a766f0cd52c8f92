"""The ``quant`` command: errors are one clear line and an exit code, never a traceback;
``quant evaluate`` prints the walk-forward table."""

from __future__ import annotations

import dagster as dg
import pytest

from quant_assets.cli import console, main
from quant_assets.market import calendar
from quant_assets.settings import Settings
from quant_assets.storage.database import get_engine
from quant_assets.storage.ephemeral_postgres import free_port
from quant_assets_tests.helpers import TICKERS, populate

# Tiny networks for the commands that train (QUANT_TRAIN_* settings).
TINY_TRAINING = {
    "window": 20,
    "epochs": 1,
    "lstm_units": 8,
    "lstm_dense": 8,
    "transformer_d_model": 8,
    "transformer_heads": 2,
    "transformer_ff": 16,
    "transformer_blocks": 1,
    "parity_windows": 32,
}


def test_an_unknown_source_is_one_line_listing_the_valid_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUANT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("QUANT_SOURCE", "csv")
    assert main(["status"]) == 2
    out = capsys.readouterr().out
    assert "unknown source 'csv'" in out and "massive" in out and "Traceback" not in out


def test_an_unreachable_database_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"postgresql+psycopg2://quant:hunter2@127.0.0.1:{free_port()}/quant"
    monkeypatch.setenv("QUANT_DATABASE_URL", url)
    monkeypatch.setenv("QUANT_DB_CONNECT_ATTEMPTS", "1")
    for command in (["status"], ["backfill"]):
        assert main(command) == 1
        out = capsys.readouterr().out
        assert "DatabaseUnavailableError" in out and "hunter2" not in out


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_quant_evaluate_prints_the_walk_forward_table(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path,
    quant_env: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    for name, value in TINY_TRAINING.items():
        monkeypatch.setenv(f"QUANT_TRAIN_{name.upper()}", str(value))
    monkeypatch.setattr(console, "width", 200)  # the table's cells unwrapped
    days = [str(d.date()) for d in calendar.sessions("2026-09-02", "2026-09-16")]
    populate(get_engine(quant_env), TICKERS, ("2026-08-31", "2026-09-16"), days, days)

    assert main(["evaluate", "--folds", "2", "--tickers", ",".join(TICKERS)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "mean ± sd" in line]
    assert [row.split()[5] for row in rows] == ["lstm", "transformer", "logistic"]
    assert "Traceback" not in out
    client = MlflowClient(tracking_uri=quant_env.mlflow_tracking_uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("quant_assets").experiment_id],
        "attributes.run_name = 'walk_forward'",
    )
    assert f"MLflow: run {run.info.run_id}" in out
    with dg.DagsterInstance.get() as instance:
        assert instance.get_latest_materialization_event(dg.AssetKey("walk_forward")) is not None

    assert main(["evaluate", "--folds", "9"]) == 1  # 11 sessions cannot make 9 folds
    out = capsys.readouterr().out
    assert "too few for 9 folds" in out and "Traceback" not in out
