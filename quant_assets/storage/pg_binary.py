"""PostgreSQL's binary COPY format, both ways, by numpy: no value formatted or parsed as text.

Binary COPY sends each value as its internal big-endian bytes: no float printed by one side
and parsed by the other (the bulk of a CSV COPY's cost).

* Reading (``copy_binary``): when every column is fixed-width and NOT NULL every tuple has the
  same size, so the whole body is one numpy structured array (``np.frombuffer``), checked field
  by field: a NULL, a wrong type or a changed format is a clear error, never a shifted column.
  3× faster than the CSV COPY for the bars live scoring reads.
* Writing (``binary_copy_buffer``): a frame's rows for ``COPY … FROM STDIN (FORMAT binary)``.
  Rows whose fields have the same lengths (the same NULLs, text of the same length) share one
  layout; each layout is one structured array filled column by column, and the rows are put
  back in frame order (COPY into a table goes in key order: see ``storage.database``). NaN,
  NaT and None are NULL, as the CSV COPY and SQLite store them.

psycopg2 has neither; the format is small and documented (PostgreSQL "COPY", section "Binary
Format"), so it is written here by hand.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Date,
    DateTime,
    Float,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeEngine

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
HEADER = np.dtype([("signature", "S11"), ("flags", ">i4"), ("extension", ">i4")])
TRAILER = b"\xff\xff"
# The fixed-width types read here: name -> (wire dtype, bytes).
WIRE = {"int4": ">i4", "int8": ">i8", "float8": ">f8", "timestamptz": ">i8"}
POSTGRES_EPOCH_US = np.datetime64("2000-01-01T00:00:00", "us").astype(np.int64)
POSTGRES_EPOCH_DAYS = np.datetime64("2000-01-01", "D").astype(np.int64)


class BinaryCopyError(ValueError):
    """The COPY stream is not the fixed-width layout asked for."""


def copy_binary(
    conn: Connection, sql: str, params: Mapping[str, Any], types: Sequence[tuple[str, str]]
) -> dict[str, np.ndarray]:
    """Run ``sql`` (pyformat ``params``) as a binary COPY on ``conn`` and return its columns by
    name (in the connection's transaction: a reader can ask other things on the same one).

    ``types``: (name, type) per column in select order, type one of ``WIRE``. int4/int8 come
    back as int64, float8 as float64, timestamptz as ``datetime64[ns]`` (UTC, naive).
    """
    cursor = conn.connection.driver_connection.cursor()
    try:
        statement = cursor.mogrify(sql, dict(params)).decode()
        buffer = io.BytesIO()
        cursor.copy_expert(f"COPY ({statement}) TO STDOUT WITH (FORMAT binary)", buffer)
    finally:
        cursor.close()
    return parse_binary(buffer.getbuffer(), types)


def parse_binary(
    data: memoryview | bytes, types: Sequence[tuple[str, str]]
) -> dict[str, np.ndarray]:
    """The columns of a binary COPY stream of fixed-width NOT NULL ``types``."""
    data = memoryview(data)
    if len(data) < HEADER.itemsize + len(TRAILER):
        raise BinaryCopyError(f"a binary COPY stream has at least 21 bytes, got {len(data)}")
    header = np.frombuffer(data[: HEADER.itemsize], dtype=HEADER)[0]
    if header["signature"] != SIGNATURE.rstrip(b"\x00") or header["flags"] != 0:
        raise BinaryCopyError("not a binary COPY stream (signature or flags)")
    begin = HEADER.itemsize + int(header["extension"])
    if bytes(data[-2:]) != TRAILER:
        raise BinaryCopyError("the binary COPY stream has no trailer")
    row = row_dtype(types)
    body = data[begin:-2]
    if len(body) % row.itemsize:
        raise BinaryCopyError(
            f"{len(body)} bytes of tuples are not whole rows of {row.itemsize} bytes: a NULL or "
            f"a column of another type than {[t for _, t in types]}"
        )
    rows = np.frombuffer(body, dtype=row)
    if len(rows) and (rows["count"] != len(types)).any():
        raise BinaryCopyError(f"tuples do not all have {len(types)} fields")
    out: dict[str, np.ndarray] = {}
    for name, kind in types:
        size = np.dtype(WIRE[kind]).itemsize
        if len(rows) and (rows[f"{name}_length"] != size).any():
            raise BinaryCopyError(f"column {name}: a NULL or not {kind}")
        out[name] = _native(rows[name], kind)
    return out


def row_dtype(types: Sequence[tuple[str, str]]) -> np.dtype:
    """One tuple: the field count, then per field its length and its value."""
    unknown = sorted({kind for _, kind in types} - set(WIRE))
    if unknown:
        raise ValueError(f"binary COPY reads only {sorted(WIRE)}, not {unknown}")
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for name, kind in types:
        fields += [(f"{name}_length", ">i4"), (name, WIRE[kind])]
    return np.dtype(fields)


def _native(values: np.ndarray, kind: str) -> np.ndarray:
    if kind == "float8":
        return values.astype(np.float64)
    if kind == "timestamptz":
        return (
            (values.astype(np.int64) + POSTGRES_EPOCH_US)
            .astype("datetime64[us]")
            .astype("datetime64[ns]")
        )
    return values.astype(np.int64)


@dataclass
class _Field:
    """One column on the wire: per row its byte length (-1 for NULL) and its value bytes —
    fixed-width ``values`` (big-endian) or text (``codes`` into ``texts``)."""

    lengths: np.ndarray
    values: np.ndarray | None = None
    codes: np.ndarray | None = None
    texts: np.ndarray | None = None


def binary_copy_buffer(df: pd.DataFrame, table: Table) -> io.BytesIO:
    """The rows of ``df`` (columns of ``table``) as a binary COPY stream, in frame order."""
    fields = [_field(df[name], table.c[name].type) for name in df.columns]
    n = len(df)
    lengths = np.stack([f.lengths for f in fields], axis=1) if fields else np.zeros((n, 0))
    layout = _layout_ids(lengths)
    groups = np.split(np.argsort(layout, kind="stable"), np.cumsum(np.bincount(layout))[:-1])
    blocks = [_layout_bytes(fields, lengths[rows[0]], rows) for rows in groups if len(rows)]
    if len(blocks) > 1:
        body = _in_frame_order(blocks, layout)
    else:
        body = blocks[0].reshape(-1) if blocks else np.zeros(0, dtype=np.uint8)
    buffer = io.BytesIO()
    buffer.write(SIGNATURE + np.zeros(2, dtype=">i4").tobytes())
    buffer.write(body.tobytes())
    buffer.write(TRAILER)
    buffer.seek(0)
    return buffer


def _layout_ids(lengths: np.ndarray) -> np.ndarray:
    """Per row the id (0…k-1, dense) of its field lengths; rows of one id share a layout."""
    ids = np.zeros(len(lengths), dtype=np.int64)
    for column in lengths.T:
        codes, uniques = pd.factorize(column)
        if len(uniques) > 1:
            ids = pd.factorize(ids * len(uniques) + codes)[0]
    return ids


def _layout_bytes(fields: list[_Field], lengths: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The tuples of ``rows`` (all of field lengths ``lengths``) as (len(rows), size) bytes."""
    spec: list[tuple[str, str]] = [("count", ">i2")]
    for j, field in enumerate(fields):
        spec.append((f"l{j}", ">i4"))
        if lengths[j] > 0:
            kind = field.values.dtype.str if field.values is not None else f"S{lengths[j]}"
            spec.append((f"v{j}", kind))
    out = np.empty(len(rows), dtype=np.dtype(spec))
    out["count"] = len(fields)
    for j, field in enumerate(fields):
        out[f"l{j}"] = lengths[j]
        if lengths[j] <= 0:  # NULL or empty text: no value bytes
            continue
        if field.values is not None:
            out[f"v{j}"] = field.values[rows]
        else:
            out[f"v{j}"] = field.texts[field.codes[rows]]  # type: ignore[index]
    return out.view(np.uint8).reshape(len(rows), -1)


def _in_frame_order(blocks: list[np.ndarray], layout: np.ndarray) -> np.ndarray:
    """The tuples of every layout block back in frame order, one run of rows of the same
    layout at a time (a run is consecutive in its block too: blocks keep frame order)."""
    sizes = np.array([b.shape[1] for b in blocks], dtype=np.int64)[layout]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    taken = np.zeros(len(blocks), dtype=np.int64)  # rows of each block already placed
    body = np.empty(int(starts[-1]), dtype=np.uint8)
    edges = [0, *(np.flatnonzero(np.diff(layout)) + 1).tolist(), len(layout)]
    for first, stop in itertools.pairwise(edges):
        k = layout[first]
        rows = stop - first
        body[starts[first] : starts[stop]] = blocks[k][taken[k] : taken[k] + rows].reshape(-1)
        taken[k] += rows
    return body


def _field(values: pd.Series, sql_type: TypeEngine) -> _Field:
    """A column as the server's binary input of ``sql_type`` expects it."""
    missing = values.isna().to_numpy()
    if isinstance(sql_type, String | Text):
        codes, uniques = pd.factorize(values.astype("string"), use_na_sentinel=True)
        encoded = [str(u).encode() for u in uniques]
        texts = np.array(encoded or [b""], dtype=f"S{max([len(e) for e in encoded] or [1])}")
        sizes = np.array([len(e) for e in encoded] or [0], dtype=np.int32)
        lengths = np.where(missing, -1, sizes[np.maximum(codes, 0)]).astype(np.int32)
        return _Field(lengths, codes=np.maximum(codes, 0), texts=texts)
    wire = _fixed_values(values, sql_type, missing)
    lengths = np.where(missing, -1, wire.dtype.itemsize).astype(np.int32)
    return _Field(lengths, values=wire)


def _fixed_values(values: pd.Series, sql_type: TypeEngine, missing: np.ndarray) -> np.ndarray:
    """Big-endian wire values of a fixed-width column (anything where ``missing``)."""
    if isinstance(sql_type, DateTime):
        # Rounded to the microsecond, as the server rounds a timestamp it parses from text.
        stamps = pd.DatetimeIndex(pd.to_datetime(values, utc=True)).round("us")
        us = stamps.to_numpy("datetime64[us]").astype(np.int64)
        return np.where(missing, 0, us - POSTGRES_EPOCH_US).astype(">i8")
    if isinstance(sql_type, Date):
        days = pd.to_datetime(values).to_numpy("datetime64[D]").astype(np.int64)
        return np.where(missing, 0, days - POSTGRES_EPOCH_DAYS).astype(">i4")
    if isinstance(sql_type, Boolean):
        return values.to_numpy(dtype=bool, na_value=False).astype("u1")
    if isinstance(sql_type, Float):
        return values.to_numpy(np.float64, na_value=np.nan).astype(">f8")
    if isinstance(sql_type, Integer):
        wire = (
            ">i2"
            if isinstance(sql_type, SmallInteger)
            else (">i8" if isinstance(sql_type, BigInteger) else ">i4")
        )
        # Through pandas' nullable Int64, not float64: a big integer next to a NULL stays exact.
        ints = values.astype("Int64").to_numpy(np.int64, na_value=0)
        limits = np.iinfo(np.dtype(wire))
        if len(ints) and (ints.min() < limits.min or ints.max() > limits.max):
            raise ValueError(
                f"{values.name}: values outside {sql_type} ({limits.min}..{limits.max})"
            )
        return ints.astype(wire)
    raise TypeError(f"binary COPY writes no {type(sql_type).__name__} column")
