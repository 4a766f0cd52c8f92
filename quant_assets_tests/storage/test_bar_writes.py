"""Every write of raw bars stamps its tickers in its own transaction (storage.bar_writes)."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import Engine

from quant_assets.storage.bar_writes import read_write_stamps
from quant_assets.storage.bars import write_bars
from quant_assets.storage.database import insert_new, upsert_frame
from quant_assets_tests.storage.helpers import DAY_OPEN, bars


def stamps(engine: Engine, tickers: list[str]) -> dict:
    with engine.connect() as conn:
        return read_write_stamps(conn, tickers)


def test_each_write_replaces_its_tickers_stamps_and_names_the_one_before(engine: Engine) -> None:
    assert stamps(engine, ["AAA", "BBB"]) == {}
    both = pd.concat([bars("AAA", n=5), bars("BBB", n=3)], ignore_index=True)
    write_bars(both, engine)
    first = stamps(engine, ["AAA", "BBB", "NONE"])
    assert set(first) == {"AAA", "BBB"}
    assert first["AAA"].previous_write_id is None
    assert first["AAA"].first_ts == DAY_OPEN == first["BBB"].first_ts

    later = bars("AAA", n=5).iloc[3:]  # a write of the last two bars, values unchanged
    write_bars(later, engine)
    second = stamps(engine, ["AAA", "BBB"])
    assert second["AAA"].previous_write_id == first["AAA"].write_id
    assert second["AAA"].write_id != first["AAA"].write_id
    assert second["AAA"].first_ts == later["ts"].min()
    assert second["BBB"] == first["BBB"]  # not in the write: untouched

    insert_new(bars("BBB", n=4), "price_data", engine)  # the insert-only path stamps too
    assert stamps(engine, ["BBB"])["BBB"].previous_write_id == first["BBB"].write_id


def test_a_write_rolled_back_leaves_the_stamp_as_it_was(engine: Engine) -> None:
    write_bars(bars("AAA", n=3), engine)
    before = stamps(engine, ["AAA"])
    with pytest.raises(RuntimeError, match="after the write"), engine.begin() as conn:
        upsert_frame(conn, "price_data", bars("AAA", n=3, price=200.0))
        raise RuntimeError("failed after the write")
    assert stamps(engine, ["AAA"]) == before
    assert stamps(engine, []) == {}
