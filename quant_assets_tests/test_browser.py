"""The first hour in the Dagster and MLflow UIs, walked in a real browser after a small demo.

One ``quant demo`` (two tickers, fifteen sessions, tiny networks) fills a throw-away
``QUANT_HOME`` and ``DAGSTER_HOME``; then ``dagster-webserver`` (on the repository's
``workspace.yaml``, as ``make dagster-dev`` loads it) and ``mlflow ui`` (as ``make mlflow-ui``)
serve them on free 127.0.0.1 ports, and headless Debian Chromium driven by Playwright walks the
pages a new user opens (``quant_assets_tests.browser``):

* the global lineage with every group expanded draws every asset;
* a model asset's page opens on its plots, drawn (the MLflow UI serves them);
* one ``raw_bars`` partition shows its own figures (rows as stored for that day and ticker);
* the demo's nightly run is listed under its job;
* every unpartitioned asset materializes from its page with the default config;
* MLflow's Compare view of the LSTM and Transformer runs lists the same-named figures.

The instance launches a UI run at once (``DefaultRunCoordinator``) rather than queueing it for a
daemon: the walk is about the pages, the daemon has tests of its own. Screenshots
(``walkthrough_*.png``) go to ``$QUANT_TEST_ARTIFACTS`` (``make test``: ``test-artifacts/``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from quant_assets.market import calendar
from quant_assets.runner import CODE_LOCATION, DAGSTER_YAML
from quant_assets.storage.bars import read_bars
from quant_assets.tracking import ML_WORKFLOW_QUERY
from quant_assets_tests.browser import (
    ROOT,
    Server,
    artifacts_dir,
    chromium,
    clean_env,
    free_port,
    require_browser,
    serve,
    tail,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(1800)]

TICKERS = ("AAPL", "MSFT")
WINDOW = ("2026-03-02", "2026-03-20")  # 15 sessions
PARTITION = ("2026-03-10", "AAPL")
TINY = {  # small networks, one epoch: the walk is about the pages, not the models
    "EPOCHS": "1", "LSTM_UNITS": "8", "LSTM_DENSE": "8", "TRANSFORMER_D_MODEL": "8",
    "TRANSFORMER_HEADS": "2", "TRANSFORMER_FF": "16", "TRANSFORMER_BLOCKS": "1",
    "PARITY_WINDOWS": "64", "SESSIONS": "15", "HOLDOUT_SESSIONS": "2",
}  # fmt: skip
DEMO_TIMEOUT_S = 1200
RUN_TIMEOUT_S = 300
PAGE_TIMEOUT_MS = 60_000
# Graph nodes in Dagster's UI: a collapsed asset group, and the name of an asset node.
GROUP_NODE = '[aria-label="asset_group"]'
ASSET_NAME = '[class*="AssetNode_assetName"]'
ASSET_NAMES_JS = f"""() => Array.from(document.querySelectorAll('{ASSET_NAME}'))
    .map(e => e.innerText.trim()).filter(t => t.length > 0)"""
TERMINAL = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


@dataclass(frozen=True)
class Walk:
    """The demo's homes, its summary and the two servers over them."""

    quant_home: Path
    dagster_home: Path
    summary: dict[str, Any]
    dagster: Server
    mlflow: Server

    def instance(self) -> dg.DagsterInstance:
        """The services' instance (its storage's base_dir is $DAGSTER_HOME, as theirs)."""
        with mock.patch.dict(os.environ, {"DAGSTER_HOME": str(self.dagster_home)}):
            return dg.DagsterInstance.from_config(str(self.dagster_home))


def _instance_yaml() -> str:
    """The project's instance settings, with UI runs launched at once (no daemon here)."""
    config = yaml.safe_load(DAGSTER_YAML.read_text())
    config.pop("run_queue", None)  # the queue's settings; this coordinator has none
    config["run_coordinator"] = {
        "module": "dagster.core.run_coordinator",
        "class": "DefaultRunCoordinator",
    }
    return yaml.safe_dump(config)


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walk]:
    require_browser()
    root = tmp_path_factory.mktemp("walkthrough")
    quant_home, dagster_home = root / "quant", root / "dagster"
    (dagster_home / ".nux").mkdir(parents=True)
    (dagster_home / ".nux" / "nux.yaml").write_text("seen: 1\n")  # no first-visit dialog
    (dagster_home / "dagster.yaml").write_text(_instance_yaml())
    mlflow_port = free_port()
    env = clean_env(
        {
            "QUANT_HOME": str(quant_home),
            "DAGSTER_HOME": str(dagster_home),
            "QUANT_TICKERS": ",".join(TICKERS),
            "QUANT_DEMO_START": WINDOW[0],
            "QUANT_DEMO_END": WINDOW[1],
            "QUANT_POLL_INTERVAL_S": "240",  # the live replay in few polls
            "QUANT_MLFLOW_UI_URL": f"http://127.0.0.1:{mlflow_port}",
            **{f"QUANT_TRAIN_{k}": v for k, v in TINY.items()},
        }
    )
    demo_log = root / "demo.log"
    with open(demo_log, "wb") as log:
        demo = subprocess.run(
            [sys.executable, "-m", "quant_assets.cli", "demo"], cwd=root, env=env,
            stdout=log, stderr=subprocess.STDOUT, timeout=DEMO_TIMEOUT_S, check=False,
        )  # fmt: skip
    assert demo.returncode == 0, tail(demo_log)
    summary = json.loads((quant_home / "demo_summary.json").read_text())
    webserver = [sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1"]
    mlflow = [str(Path(sys.executable).parent / "mlflow"), "ui", "-h", "127.0.0.1"]
    dagster_port = free_port()
    with (
        serve(
            [*webserver, "-p", str(dagster_port), "-w", str(ROOT / "workspace.yaml")],
            dagster_port, env, root / "webserver.log", "/server_info",
        ) as dagster_server,
        serve(
            [*mlflow, "-p", str(mlflow_port),
             "--backend-store-uri", f"sqlite:///{quant_home / 'mlflow.db'}"],
            mlflow_port, env, root / "mlflow.log", "/health",
        ) as mlflow_server,
    ):  # fmt: skip
        yield Walk(quant_home, dagster_home, summary, dagster_server, mlflow_server)


@pytest.fixture
def page(walk: Walk, tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path / "chromium-profile") as page:
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        yield page


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    return artifacts_dir(tmp_path)


def test_the_lineage_draws_every_asset_with_the_groups_expanded(
    walk: Walk, page: Any, artifacts: Path
) -> None:
    from quant_assets.definitions import defs

    expected = {key.path[-1] for key in defs.resolve_asset_graph().get_all_asset_keys()}
    page.goto(f"{walk.dagster.url}/asset-groups")
    # With several groups the graph starts with them collapsed: the UI's Alt+E expands all.
    page.wait_for_selector(f"{GROUP_NODE}, {ASSET_NAME}")
    if page.locator(GROUP_NODE).count():
        page.keyboard.press("Alt+KeyE")
    page.wait_for_function(
        f"names => {{ const drawn = new Set(({ASSET_NAMES_JS})());"
        " return names.every(n => drawn.has(n)); }",
        arg=sorted(expected),
    )
    page.wait_for_timeout(500)  # let the graph settle before the screenshot
    page.screenshot(path=str(artifacts / "walkthrough_lineage.png"), full_page=True)
    assert expected <= set(page.evaluate(ASSET_NAMES_JS))


def test_a_model_asset_page_opens_on_its_plots(walk: Walk, page: Any, artifacts: Path) -> None:
    page.goto(f"{walk.dagster.url}/assets/lstm_model")
    image = page.locator('img[alt="learning curves"]').first
    image.wait_for()
    drawn = "img => img.complete && img.naturalWidth > 0"
    page.wait_for_function(drawn, arg=image.element_handle())
    # The plots are the first entry of the metadata table, drawn in place.
    first_row = image.evaluate("img => img.closest('tbody').querySelector('tr').innerText")
    assert first_row.strip().startswith("plots")
    # The second plot is fetched from the MLflow UI on its own: wait for it as for the first.
    confusion = page.locator('img[alt="confusion matrix"]').first
    page.wait_for_function(drawn, arg=confusion.element_handle())
    assert confusion.evaluate("i => i.naturalWidth") > 0
    page.screenshot(path=str(artifacts / "walkthrough_model_asset.png"), full_page=True)


def test_a_partition_shows_its_own_figures(walk: Walk, page: Any, artifacts: Path) -> None:
    day, ticker = PARTITION
    engine = sa.create_engine(f"sqlite:///{walk.quant_home / 'quant.db'}")
    try:
        rows = len(read_bars(engine, [ticker], *calendar.session_bounds(pd.Timestamp(day))))
    finally:
        engine.dispose()
    assert rows > 0
    page.goto(f"{walk.dagster.url}/assets/raw_bars?view=partitions&partition={day}|{ticker}")
    # The partition's materialization carries the run's figures (Dagster gives every partition
    # of a range run the same, dagster-io/dagster#18123) and says so; its own are in the run's
    # per-partition table.
    page.get_by_text("figures_cover").wait_for()
    page.locator("tr", has_text="per_partition").get_by_text("[Show Markdown]").click()
    dialog = page.locator('[role="dialog"]').last
    dialog.get_by_text(day).first.wait_for()
    page.screenshot(path=str(artifacts / "walkthrough_partition.png"), full_page=True)
    assert re.search(rf"{day}\s+{ticker}\s+{rows}\s", dialog.inner_text()), dialog.inner_text()


def test_the_demo_nightly_run_is_listed_under_its_job(
    walk: Walk, page: Any, artifacts: Path
) -> None:
    (nightly,) = [s for s in walk.summary["stages"] if s["stage"].startswith("nightly")]
    page.goto(f"{walk.dagster.url}/locations/{CODE_LOCATION}/jobs/nightly_retraining/runs")
    page.get_by_text(nightly["run_id"][:8]).first.wait_for()
    page.screenshot(path=str(artifacts / "walkthrough_job_runs.png"), full_page=True)


def test_every_unpartitioned_asset_materializes_from_its_page(
    walk: Walk, page: Any, artifacts: Path
) -> None:
    from quant_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.toposorted_asset_keys if graph.get(k).partitions_def is None]
    outcomes: dict[str, str] = {}
    with walk.instance() as instance:
        for key in keys:  # one after the other: each reads what the one before wrote
            before = {r.run_id for r in instance.get_runs()}
            page.goto(f"{walk.dagster.url}/assets/{key.to_user_string()}")
            # The button's accessible name includes its icon's: match the text it shows.
            page.locator("button", has_text=re.compile(r"^Materialize$")).click()
            run = _launched_run(page, instance, before)
            outcomes[key.to_user_string()] = run.status.value
            if run.status != dg.DagsterRunStatus.SUCCESS:
                page.goto(f"{walk.dagster.url}/runs/{run.run_id}")
                page.screenshot(path=str(artifacts / "walkthrough_failed_run.png"))
                break
    page.goto(f"{walk.dagster.url}/runs")
    page.screenshot(path=str(artifacts / "walkthrough_runs.png"), full_page=True)
    assert outcomes == {k.to_user_string(): "SUCCESS" for k in keys}, (
        f"{outcomes}\n{tail(walk.dagster.log)}"
    )


def _launched_run(page: Any, instance: dg.DagsterInstance, before: set[str]) -> dg.DagsterRun:
    """The run the click launched, once it has finished. Dagster asks first when an upstream
    asset was never materialized (drift_report's live_predictions is not, with no champion):
    then a user confirms."""
    confirm = page.get_by_role("button", name="Confirm")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    new: list[dg.DagsterRun] = []
    while time.monotonic() < deadline:
        new = [r for r in instance.get_runs() if r.run_id not in before]
        if new and new[0].status in TERMINAL:
            return new[0]
        if not new and confirm.is_visible():
            confirm.click()
        page.wait_for_timeout(500)
    pytest.fail(f"no finished run {RUN_TIMEOUT_S} s after the click (new: {len(new)})")


def test_mlflow_compare_lists_the_same_figures_for_both_models(
    walk: Walk, page: Any, artifacts: Path
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{walk.quant_home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("quant_assets")
    runs = {
        arch: client.search_runs(
            [experiment.experiment_id],
            f"tags.arch = '{arch}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )[0].info.run_id
        for arch in ("lstm", "transformer")
    }
    page.goto(
        f"{walk.mlflow.url}/#/compare-runs?runs={json.dumps(list(runs.values()))}"
        f"&experiments={json.dumps([experiment.experiment_id])}&{ML_WORKFLOW_QUERY}"
    )
    for name in ("confusion_matrix.png", "learning_curves.png", "holdout_equity_curve.png"):
        page.get_by_text(name, exact=True).first.wait_for()
    page.get_by_text("learning_curves.png", exact=True).first.click()
    page.wait_for_timeout(2_000)  # both previews load
    page.screenshot(path=str(artifacts / "walkthrough_mlflow_compare.png"), full_page=True)
