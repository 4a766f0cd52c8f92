"""``quant export-features``: the CSV equals the stored tables, the spec describes every column."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from quant_assets.cli import main
from quant_assets.daily_tables import (
    label_spec_json,
)
from quant_assets.feature_export import (
    COLUMN_DESCRIPTIONS,
    CSV_COLUMNS,
    NoFeatureRowsError,
    default_out_path,
    export_features,
    parse_tickers,
    spec_path_for,
)
from quant_assets.features.spec import FEATURE_SPEC
from quant_assets.labels import LabelSpec
from quant_assets.market import calendar
from quant_assets.settings import Settings
from quant_assets.storage.database import get_engine, read_from_db
from quant_assets_tests.helpers import FEATURE_DAYS, LABEL_DAYS, TICKERS, populate


@pytest.fixture
def populated(engine: Engine) -> Engine:
    populate(engine)
    return engine


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"ticker": "string"}, parse_dates=["ts", "label_t1"])


def test_csv_holds_the_feature_rows_with_adjusted_close_and_labels(
    populated: Engine, tmp_path: Path
) -> None:
    out = tmp_path / "sample" / "features.csv"
    result = export_features(populated, *FEATURE_DAYS, out, tickers=["AAPL"])
    assert result.csv_path == out and result.spec_path == tmp_path / "sample" / "features.spec.json"
    frame = read_csv(out)
    assert tuple(frame.columns) == CSV_COLUMNS
    stored = read_from_db(
        "SELECT f.ts, f.rsi_14, f.log_ret_5, a.close FROM features f JOIN adjusted_bars a "
        "ON a.ticker = f.ticker AND a.ts = f.ts WHERE f.ticker = 'AAPL' ORDER BY f.ts",
        populated,
        utc_columns=["ts"],
    )
    assert len(frame) == len(stored) == result.rows > 700  # two sessions of one ticker
    assert set(frame["ticker"]) == {"AAPL"} and result.tickers == ("AAPL",)
    assert (frame["ts"] == stored["ts"]).all()
    np.testing.assert_allclose(frame["adj_close"], stored["close"], rtol=1e-12)
    np.testing.assert_allclose(frame["rsi_14"], stored["rsi_14"], rtol=1e-12)
    np.testing.assert_allclose(frame["log_ret_5"], stored["log_ret_5"], rtol=1e-12)
    assert (
        frame["warm"].all() and (frame["feature_version"].astype(str) == FEATURE_SPEC.version).all()
    )
    # Labels only where stored: the first session has them (but its last bar), the second none.
    sessions = calendar.session_labels(frame["ts"]).dt.strftime("%Y-%m-%d")
    first = frame[sessions == LABEL_DAYS[0]]
    second = frame[sessions != LABEL_DAYS[0]]
    assert first["label"].notna().sum() == len(first) - 1 == result.labeled_rows
    assert second[["label", "label_t1", "label_ret", "label_sigma"]].isna().all().all()
    assert set(first["label"].dropna().astype(int)) <= {-1, 0, 1}
    labelled = first.dropna(subset=["label"])
    assert (labelled["label_t1"] > labelled["ts"]).all()


def test_spec_json_describes_every_column(populated: Engine, tmp_path: Path) -> None:
    result = export_features(populated, *FEATURE_DAYS, tmp_path / "f.csv")
    spec = json.loads(result.spec_path.read_text())
    assert spec["feature_spec"] == FEATURE_SPEC.to_dict()
    assert [c["name"] for c in spec["columns"]] == list(CSV_COLUMNS)
    assert all(c["description"] for c in spec["columns"])
    assert spec["label_specs"] == [json.loads(label_spec_json(LabelSpec()))]
    assert spec["export"]["tickers"] == list(TICKERS) and spec["export"]["rows"] == result.rows
    assert spec["export"]["sessions"] == list(FEATURE_DAYS)
    assert set(FEATURE_SPEC.columns) <= set(CSV_COLUMNS)


def test_every_csv_column_has_a_description() -> None:
    assert set(COLUMN_DESCRIPTIONS) == set(CSV_COLUMNS)


def test_no_rows_is_a_clear_error(populated: Engine, tmp_path: Path) -> None:
    with pytest.raises(NoFeatureRowsError, match=r"2026-09-03 … 2026-09-04"):
        export_features(populated, "2026-10-01", "2026-10-02", tmp_path / "x.csv")
    with pytest.raises(NoFeatureRowsError, match="no rows for them at all"):
        export_features(populated, *FEATURE_DAYS, tmp_path / "x.csv", tickers=["NVDA"])
    assert not (tmp_path / "x.csv").exists()


def test_end_before_start_is_refused(populated: Engine, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="before"):
        export_features(populated, "2026-09-04", "2026-09-03", tmp_path / "x.csv")


def test_helpers() -> None:
    assert parse_tickers(" aapl, MSFT,,aapl ") == ("AAPL", "MSFT")
    assert parse_tickers(None) is None and parse_tickers(" ") is None
    assert spec_path_for(Path("a/b.csv")) == Path("a/b.spec.json")
    assert default_out_path(
        Settings(home=Path("h"), _env_file=None), "2026-09-03", "2026-09-04"
    ) == Path("h/exports/features_2026-09-03_2026-09-04.csv")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_cli(quant_env: Settings, capsys: pytest.CaptureFixture[str], backend: str) -> None:
    populate(get_engine(quant_env), tickers=("AAPL",), label_days=())
    assert main(["export-features", "--start", FEATURE_DAYS[0], "--end", FEATURE_DAYS[1]]) == 0
    out = capsys.readouterr().out
    csv = default_out_path(quant_env, *FEATURE_DAYS)
    assert csv.is_file() and spec_path_for(csv).is_file()
    assert "wrote" in out and "spec" in out
    frame = read_csv(csv)
    assert frame["label"].isna().all() and len(frame) > 700
    assert main(["export-features", "--start", "2026-10-01", "--end", "2026-10-02",
                 "--tickers", "aapl", "--out", str(quant_env.home / "y.csv")]) == 1  # fmt: skip
    err = capsys.readouterr().out
    assert "no feature rows for AAPL" in err and "Materialize" in err
