"""Drift thresholds come from QUANT_DRIFT_<FIELD> settings."""

import pytest

from quant_assets.monitoring.thresholds import DriftThresholds


def test_env_overrides_defaults_and_bad_values_are_named() -> None:
    th = DriftThresholds.from_env(
        {
            "QUANT_DRIFT_PERSISTENCE": "4",
            "QUANT_DRIFT_KS_ALPHA": "0.01",
            "QUANT_DRIFT_TIME_OF_DAY_REFERENCE": "false",
            "UNRELATED": "1",
        }
    )
    assert (th.persistence, th.ks_alpha, th.time_of_day_reference) == (4, 0.01, False)
    assert DriftThresholds.from_env({}) == DriftThresholds()
    with pytest.raises(ValueError, match="QUANT_DRIFT_PERSISTENCE"):
        DriftThresholds.from_env({"QUANT_DRIFT_PERSISTENCE": "many"})
    with pytest.raises(ValueError):
        DriftThresholds.from_env(
            {"QUANT_DRIFT_SHARE_WARN": "0.9", "QUANT_DRIFT_SHARE_SEVERE": "0.2"}
        )
