"""The ``quant`` command's errors: one clear line and an exit code, never a traceback."""

from __future__ import annotations

import pytest

from quant_assets.cli import main
from quant_assets.storage.ephemeral_postgres import free_port


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
