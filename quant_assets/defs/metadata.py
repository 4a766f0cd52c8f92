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


def coverage(
    built: Mapping[str, Sequence[str]], columns: Sequence[str], stored: Mapping[str, int]
) -> dict[str, dg.MetadataValue]:
    """What a run of some tickers did, beside what the table holds for every market ticker (a
    rebuild of one ticker materializes the same day partitions as a full run): ``scope``,
    ``rows_stored``, and ``per_ticker``, a markdown row per market ticker (and any other one
    built) with the run's cells for it (``built``, under ``columns``) or "not in this run",
    then the rows stored for the run's days."""
    others = [t for t in stored if t not in built]
    scope = f"all {len(built)} tickers" if not others else (
        f"{len(built)} of {len(built) + len(others)} tickers ({', '.join(built)}); the "
        "others' rows for these days are those earlier runs stored"
    )  # fmt: skip
    not_built = ["not in this run", *["–"] * (len(columns) - 1)]
    lines = [
        f"| ticker | {' | '.join(columns)} | rows stored (these days) |",
        "|---|" + "---|" * (len(columns) + 1),
    ]
    for ticker in dict.fromkeys([*stored, *built]):
        cells = built.get(ticker, not_built)
        lines.append(f"| {ticker} | {' | '.join(cells)} | {stored.get(ticker, 0):,} |")
    return {
        "scope": dg.MetadataValue.text(scope),
        "rows_stored": dg.MetadataValue.int(sum(stored.values())),
        "per_ticker": dg.MetadataValue.md("\n".join(lines)),
    }
