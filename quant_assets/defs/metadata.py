"""JSON metadata as a person reads it in the UI: floats to six significant digits."""

import math
from collections.abc import Mapping
from typing import Any

import dagster as dg

SIGNIFICANT_DIGITS = 6


def json_value(data: Any) -> dg.JsonMetadataValue:
    """``MetadataValue.json`` of ``data`` with every float rounded (``rounded``)."""
    return dg.MetadataValue.json(rounded(data))


def rounded(data: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """``data`` with each finite float to ``digits`` significant digits, through dicts, lists
    and tuples (a NaN or infinity is kept: rounding must not hide it)."""
    if isinstance(data, bool) or not isinstance(data, float | Mapping | list | tuple):
        return data
    if isinstance(data, float):
        return float(f"{data:.{digits}g}") if math.isfinite(data) else data
    if isinstance(data, Mapping):
        return {k: rounded(v, digits) for k, v in data.items()}
    return [rounded(v, digits) for v in data]
