"""Every database table of the project, in one place (SQLAlchemy Core).

Timestamps are stored in UTC: ``timestamptz`` on PostgreSQL; on SQLite (no time zones) as naive
UTC text, converted back to tz-aware UTC on read (see ``database.read_from_db``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

TS = DateTime(timezone=True)

price_data = Table(
    "price_data",
    metadata,
    Column("ticker", String(32), primary_key=True),
    Column("ts", TS, primary_key=True, comment="UTC start of the 1-minute bar"),
    Column("open", Float, nullable=False),
    Column("high", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("close", Float, nullable=False),
    Column("volume", BigInteger, nullable=False),
    comment="Raw (unadjusted, as traded) regular-session 1-minute bars; never adjusted in place.",
)

corporate_actions = Table(
    "corporate_actions",
    metadata,
    Column("ticker", String(32), primary_key=True),
    Column("ex_date", Date, primary_key=True),
    Column("action", String(32), primary_key=True),
    Column("value", Float, nullable=False, comment="split: new shares per old; dividend: cash"),
    Column("source", String(32), nullable=False),
    Column("fetched_at", TS, nullable=False),
    Column("processed_at", TS, nullable=True, comment="when adjusted bars last included it"),
    CheckConstraint("action IN ('split', 'dividend')", name="ck_corporate_actions_action"),
    comment="The corporate-action ledger; fetching the same action twice stores it once.",
)

bar_quarantine = Table(
    "bar_quarantine",
    metadata,
    Column("ticker", String(32), primary_key=True),
    Column("ts", TS, primary_key=True),
    Column("reason", String(32), primary_key=True),
    Column("payload", Text, nullable=False, comment="open,high,low,close,volume as received"),
    Column("seen_at", TS, nullable=False),
    comment="Rows refused by bar validation, kept with the reason instead of being dropped.",
)

backfill_queue = Table(
    "backfill_queue",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ticker", String(32), nullable=False),
    Column("start_ts", TS, nullable=False, comment="first missed minute (inclusive)"),
    Column("end_ts", TS, nullable=False, comment="end of the gap (exclusive)"),
    Column("status", String(32), nullable=False, default="pending"),
    Column("detail", Text, nullable=True),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    UniqueConstraint("ticker", "start_ts", "end_ts", name="uq_backfill_queue_gap"),
    CheckConstraint(
        "status IN ('pending', 'requested', 'done', 'unfillable')", name="ck_backfill_queue_status"
    ),
    comment="Minutes the live poller missed, waiting to be fetched again.",
)
Index("ix_backfill_queue_status", backfill_queue.c.status)

TABLES: dict[str, Table] = {t.name: t for t in metadata.sorted_tables}
