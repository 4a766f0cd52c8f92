"""In-process runs of the quant commands: which tickers one range run can cover, and the code
location they are attributed to."""

from __future__ import annotations

import itertools
from pathlib import Path

import dagster as dg
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from quant_assets.defs.partitions import ticker_partitions
from quant_assets.ingestion.history_import import HistoryImportError
from quant_assets.runner import (
    CODE_LOCATION,
    REPOSITORY_LABEL,
    REPOSITORY_LABEL_TAG,
    execute_in_process,
    ticker_blocks,
)

ORDER = ticker_partitions.get_partition_keys()


@given(st.lists(st.sampled_from(ORDER), min_size=1), st.randoms())
def test_tickers_split_into_blocks_of_neighbours_in_partition_order(chosen: list[str], rng) -> None:
    rng.shuffle(chosen)
    blocks = ticker_blocks(chosen)
    flat = [t for block in blocks for t in block]
    assert flat == sorted(set(chosen), key=ORDER.index)  # each ticker once, in partition order
    positions = [[ORDER.index(t) for t in block] for block in blocks]
    for block in positions:
        assert block == list(range(block[0], block[-1] + 1))  # a rectangle: no ticker between
    for before, after in itertools.pairwise(positions):
        assert after[0] > before[-1] + 1  # blocks that could be one run are one run


def test_every_ticker_is_one_run_and_an_unknown_one_is_refused() -> None:
    assert ticker_blocks(list(reversed(ORDER))) == [tuple(ORDER)]
    with pytest.raises(HistoryImportError, match="no raw_bars partitions for ZZZZ"):
        ticker_blocks([ORDER[0], "ZZZZ"])


def test_in_process_runs_are_listed_under_their_job_of_the_workspace_code_location() -> None:
    workspace = Path(__file__).resolve().parents[1] / "workspace.yaml"
    (location,) = yaml.safe_load(workspace.read_text())["load_from"]
    assert location["python_module"]["location_name"] == CODE_LOCATION

    @dg.op
    def one() -> int:
        return 1

    @dg.job
    def job() -> None:
        one()

    with dg.DagsterInstance.ephemeral() as instance:
        run_id = execute_in_process(job, instance, {"extra": "kept"}).run_id
        # The filter the UI's Jobs → job → Runs page sends.
        listed = instance.get_runs(
            dg.RunsFilter(job_name="job", tags={REPOSITORY_LABEL_TAG: REPOSITORY_LABEL})
        )
        assert [r.run_id for r in listed] == [run_id]
        assert listed[0].tags["extra"] == "kept"
