"""Drift thresholds come from QUANT_DRIFT_<FIELD> settings."""

import os
from pathlib import Path

import pytest

from quant_assets.drift.thresholds import DriftThresholds


def set_env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    """Exactly these QUANT_DRIFT_* variables (and no .env file) in the environment."""
    for name in [k for k in os.environ if k.startswith("QUANT_DRIFT_")]:
        monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_env_overrides_defaults_and_bad_values_are_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file
    set_env(
        monkeypatch,
        {
            "QUANT_DRIFT_PERSISTENCE": "4",
            "QUANT_DRIFT_KS_ALPHA": "0.01",
            "QUANT_DRIFT_TIME_OF_DAY_REFERENCE": "false",
            "UNRELATED": "1",
        },
    )
    th = DriftThresholds.from_env()
    assert (th.persistence, th.ks_alpha, th.time_of_day_reference) == (4, 0.01, False)
    set_env(monkeypatch, {})
    assert DriftThresholds.from_env() == DriftThresholds()
    set_env(monkeypatch, {"QUANT_DRIFT_PERSISTENCE": "many"})
    with pytest.raises(ValueError, match="QUANT_DRIFT_PERSISTENCE"):
        DriftThresholds.from_env()
    set_env(monkeypatch, {"QUANT_DRIFT_SHARE_WARN": "0.9", "QUANT_DRIFT_SHARE_SEVERE": "0.2"})
    with pytest.raises(ValueError):
        DriftThresholds.from_env()
