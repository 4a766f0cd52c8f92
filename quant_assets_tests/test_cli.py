"""The ``quant`` command: its errors (one clear line and an exit code, never a traceback),
``quant import`` / ``quant import-actions`` as a user runs them on a folder of CSVs, and
``quant evaluate`` printing the walk-forward table."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from quant_assets.cli import console, main
from quant_assets.corporate_actions.ledger import read_corporate_actions
from quant_assets.ingestion.sessions import ingest_sessions
from quant_assets.market import calendar
from quant_assets.market.file_source import FileSource
from quant_assets.market.synthetic import SyntheticConfig, synthetic_market
from quant_assets.settings import Settings
from quant_assets.storage.bars import read_bars
from quant_assets.storage.database import get_engine
from quant_assets.storage.ephemeral_postgres import free_port
from quant_assets_tests.helpers import TICKERS, TINY_NETWORKS, populate
from quant_assets_tests.market.helpers import MESSY_DAYS, MESSY_TICKERS, messy_bars, write_bars

# Tiny networks for the commands that train (QUANT_TRAIN_* settings).
TINY_TRAINING = {"window": 20, **TINY_NETWORKS}


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


# --- quant import / quant import-actions ---------------------------------------------------------
MARKET = synthetic_market(
    SyntheticConfig(tickers=MESSY_TICKERS, start="2026-01-02", end="2026-06-30")
)


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def user_folder(
    quant_env: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Path]:
    """A folder of a user's CSVs (``messy_bars``) and the environment of a user of it, whose
    QUANT_SOURCE still names the synthetic market (``--source files`` overrides it)."""
    folder = tmp_path / "files"
    write_bars(messy_bars(MARKET), folder)
    for name, value in {
        "QUANT_SOURCE": "synthetic",
        "QUANT_FILES_DIR": str(folder),
        "QUANT_TICKERS": ",".join(MESSY_TICKERS),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "COLUMNS": "200",  # rich wraps at the width of the (captured) terminal
    }.items():
        monkeypatch.setenv(name, value)
    yield folder


def text_of(capsys: pytest.CaptureFixture[str]) -> str:
    return " ".join(capsys.readouterr().out.split())


def stored(settings: Settings) -> tuple[pd.DataFrame, int]:
    engine = get_engine(settings)
    with engine.connect() as conn:
        refused = conn.execute(sa.text("SELECT COUNT(*) FROM bar_quarantine")).scalar_one()
    span = calendar.span_of_days(*MESSY_DAYS)
    return read_bars(engine, list(MESSY_TICKERS), *span), int(refused)


def test_import_loads_the_files_as_one_run_and_a_reimport_changes_nothing(
    user_folder: Path, quant_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", "--source", "files"]) == 0
    out = text_of(capsys)
    bars = messy_bars(MARKET)
    regular = bars[calendar.in_regular_session(bars["ts"]) & (bars["ts"].dt.second == 0)]
    rows, refused = stored(quant_env)
    pd.testing.assert_frame_equal(rows, regular.reset_index(drop=True), check_dtype=False)
    assert refused == 3  # two extended-hours rows, one stamp off the minute
    assert "importing 10 sessions 2026-03-02 … 2026-03-13 of 3 tickers from files" in out
    assert f"{len(regular):,} rows new or changed" in out
    assert "AAPL: 2026-03-02 14:30 … 2026-03-13 19:59 UTC; refused not_minute_aligned 1" in out
    assert "holes 2026-03-05…2026-03-06 (2 sessions); truncated 2026-03-10" in out
    n = regular["ticker"].value_counts()
    assert f"│ AAPL │ 10/10 │ {n['AAPL']:,} │ 100% │ 2 │ 1 │ 0 │ 0 │" in out  # ext.h, refused
    assert f"│ MSFT │ 8/10 │ {n['MSFT']:,} │ 100% │ 0 │ 0 │ 1 │ 1 │" in out  # a hole, a cut
    assert re.search(rf"│ NVDA │ 10/10 │ {n['NVDA']:,} │ 2\d% │ 0 │ 0 │ 0 │ 0 │", out)  # thin
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        keys = instance.get_materialized_partitions(dg.AssetKey("raw_bars"))
    assert [r.job_name for r in runs] == ["ingest_raw_bars"]
    assert len(keys) == 10 * 3

    assert main(["import", "--source", "files", "--tickers", "nvda,aapl"]) == 0
    assert "0 rows changed: every bar was already stored" in text_of(capsys)
    again, refused_again = stored(quant_env)
    pd.testing.assert_frame_equal(again, rows)
    assert refused_again == refused
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_runs()) == 3  # NVDA and AAPL are no neighbours: two runs


def test_import_errors_are_one_line(user_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import"]) == 1  # the synthetic market cannot tell its coverage
    out = capsys.readouterr().out
    assert "give --start and --end" in out and "Traceback" not in out
    assert main(["import", "--source", "files", "--tickers", "ZZZZ"]) == 1
    assert "ZZZZ" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:
        main(["import", "--start", "2026-13-01", "--end", "2026-03-13"])
    assert usage.value.code == 2


def test_an_error_inside_the_import_run_is_one_line(
    user_folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QUANT_FILES_TZ", "America/Chicago")  # the files are UTC
    assert (
        main(["import", "--source", "files", "--start", "2026-03-02", "--end", "2026-03-13"]) == 1
    )
    out = text_of(capsys)
    assert out.count("FileSourceError:") == 1 and "set QUANT_FILES_TZ=UTC" in out
    assert "Traceback" not in out and "Stack Trace" not in out


LEDGER = """ticker,ex_date,action,value
AAPL,2026-03-09,dividend,0.25
NVDA,2026-03-12,split,2
NVDA,2026-03-12,split,2
ZZZZ,2026-03-09,split,2
MSFT,2026-03-11,split,0
MSFT,2026-03-12,dividend,5000
MSFT,2026-03-10,dividend,0.4
MSFT,2026-03-10,dividend,0.5
AAPL,2027-01-15,dividend,0.3
"""


def test_import_actions_refuses_bad_rows_with_their_reason_and_is_idempotent(
    user_folder: Path, quant_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = get_engine(quant_env)
    source = FileSource(user_folder)
    for ticker in MESSY_TICKERS:  # the prior closes the dividend check reads
        ingest_sessions(source, engine, ticker, list(calendar.sessions(*MESSY_DAYS)))
    path = tmp_path / "ledger.csv"
    path.write_text(LEDGER)
    assert main(["import-actions", str(path)]) == 0
    out = text_of(capsys)
    assert "stored 2 new, 0 revised; 0 already stored; refused 5; deferred 1" in out
    for line, reason in (
        (5, "refused: unknown ticker (not in the universe)"),
        (6, "refused: split ratio must be > 0"),
        (7, "refused: dividend 5000 ≥ prior close"),
        (8, "refused: conflicting duplicate rows"),
        (9, "refused: conflicting duplicate rows"),
        (10, "deferred: dated in the future"),
        (2, "new"),
        (3, "new"),
    ):
        assert re.search(rf"│ {line} +│ [A-Z]+ +│ [^│]+│ {re.escape(reason)}", out), line
    ledger = read_corporate_actions(engine)
    assert ledger[["ticker", "action", "value"]].values.tolist() == [
        ["AAPL", "dividend", 0.25],
        ["NVDA", "split", 2.0],
    ]
    assert main(["import-actions", str(path)]) == 0
    assert "stored 0 new, 0 revised; 2 already stored; refused 5" in text_of(capsys)
    pd.testing.assert_frame_equal(read_corporate_actions(engine), ledger)
    assert main(["import-actions", str(tmp_path / "missing.csv")]) == 1
    assert "missing.csv" in capsys.readouterr().out


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


def test_ingest_score_scores_before_reporting_and_keeps_the_reporters_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from quant_assets.cli import with_scoring

    settings = Settings(home=tmp_path / "home", _env_file=None)
    calls: list[str] = []

    def reporter(frame: pd.DataFrame, source: str) -> int:
        calls.append(source)
        return len(frame)

    bars = pd.DataFrame({"ticker": ["AAA"], "ts": [pd.Timestamp("2026-03-02 15:00", tz="UTC")]})
    with caplog.at_level("WARNING"):
        assert (
            with_scoring(reporter, settings, lambda: get_engine(settings), ("AAA",))(
                bars, "synthetic"
            )
            == 1
        )
        assert with_scoring(None, settings, lambda: get_engine(settings), ("AAA",))(bars, "s") == 0
    assert calls == ["synthetic"]
    assert "no champion" in caplog.text  # scoring ran, found nothing to score with, said so
