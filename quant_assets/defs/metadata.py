"""Metadata as a person reads it in the UI: JSON floats to six significant digits, and what
part of the universe a run built."""

import math
from collections.abc import Mapping, Sequence
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


def run_scope(built: Sequence[str], universe: Sequence[str]) -> dg.TextMetadataValue:
    """Which tickers a run built, against every ticker of the market: a rebuild of one ticker
    materializes the same day partitions as a full run."""
    others = [t for t in universe if t not in set(built)]
    if not others:
        return dg.MetadataValue.text(f"all {len(built)} tickers")
    return dg.MetadataValue.text(
        f"{len(built)} of {len(set(built) | set(universe))} tickers ({', '.join(built)}); the "
        "others' rows for these days are those earlier runs stored"
    )
