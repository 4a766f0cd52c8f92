"""Every database table of the project, in one place (SQLAlchemy Core).

Timestamps are stored in UTC: ``timestamptz`` on PostgreSQL; on SQLite (no time zones) as naive
UTC text, converted back to tz-aware UTC on read (see ``database.read_from_db``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from quant_assets.features.spec import FEATURE_TABLE_COLUMNS

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

price_data_writes = Table(
    "price_data_writes",
    metadata,
    Column("ticker", String(32), primary_key=True),
    Column("write_id", String(32), nullable=False, comment="the latest write of the ticker"),
    Column("previous_write_id", String(32), nullable=True, comment="the write before it"),
    Column("first_ts", TS, nullable=False, comment="the earliest bar the latest write stored"),
    Column("written_at", TS, nullable=False),
    comment=(
        "One row per ticker, replaced in the transaction of every price_data write "
        "(storage.bar_writes): a reader that kept a ticker's bars knows what changed since."
    ),
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
    Column("row_key", String(64), primary_key=True, comment="sha256 of the row as received"),
    Column("ticker", Text, nullable=True, comment="as received (may be missing or too long)"),
    Column("ts", TS, nullable=True, comment="as received (NULL when missing)"),
    Column("reason", String(32), nullable=False),
    Column("payload", Text, nullable=False, comment="open,high,low,close,volume as received"),
    Column("seen_at", TS, nullable=False),
    comment=(
        "Rows refused by bar validation, kept with the reason instead of being dropped; "
        "keyed on the whole row, so conflicting duplicates are all kept."
    ),
)
Index("ix_bar_quarantine_ticker_ts", bar_quarantine.c.ticker, bar_quarantine.c.ts)

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

adjusted_bars = Table(
    "adjusted_bars",
    metadata,
    Column("ticker", String(32), primary_key=True),
    Column("ts", TS, primary_key=True, comment="UTC start of the 1-minute bar"),
    Column("session", Date, nullable=False, comment="New York trading date of the bar"),
    Column("open", Float, nullable=False, comment="total-return adjusted (splits and dividends)"),
    Column("high", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("close", Float, nullable=False),
    Column("volume", Float, nullable=False, comment="raw volume x split ratios after the bar"),
    Column("split_close", Float, nullable=False, comment="close adjusted for splits only"),
    Column("price_factor", Float, nullable=False, comment="adjusted price = raw x price_factor"),
    Column("split_factor", Float, nullable=False, comment="split-only price factor"),
    Column("volume_factor", Float, nullable=False, comment="adjusted volume = raw x this"),
    Column("built_at", TS, nullable=False),
    comment=(
        "Raw bars x cumulative corporate-action factors, rebuilt from price_data and the ledger "
        "(one transaction per ticker); never edited in place."
    ),
)
Index("ix_adjusted_bars_ticker_session", adjusted_bars.c.ticker, adjusted_bars.c.session)

adjusted_bars_state = Table(
    "adjusted_bars_state",
    metadata,
    Column("ticker", String(32), primary_key=True),
    Column("ledger_hash", String(64), nullable=False, comment="fingerprint of applied actions"),
    Column("applied", Text, nullable=False, comment="JSON list of the applied actions/factors"),
    Column("as_of", Date, nullable=False, comment="last raw session when built"),
    Column("raw_rows", BigInteger, nullable=False, comment="raw bars of the ticker when built"),
    Column("raw_last_ts", TS, nullable=False),
    Column("built_at", TS, nullable=False),
    comment="What each ticker's adjusted bars were last built from (staleness detection).",
)

# Derived tables whose columns follow the feature and label contracts of the pure core.
features = Table(
    "features",
    metadata,
    Column("ticker", String(32), primary_key=True),
    Column("ts", TS, primary_key=True),
    *(
        Column(name, Boolean if name == "warm" else Float, nullable=True)
        for name in FEATURE_TABLE_COLUMNS
        if name not in ("ticker", "ts")
    ),
    Column("feature_version", String(16), nullable=False),
    comment="create_features() of the total-return adjusted bars, one row per bar.",
)

labels = Table(
    "labels",
    metadata,
    Column("ticker", String(32), primary_key=True),
    Column("ts", TS, primary_key=True),
    Column("label", SmallInteger, nullable=True, comment="-1 down, 0 neutral, +1 up; NULL none"),
    Column("t1", TS, nullable=True, comment="bar that ended the label (touch or vertical)"),
    Column("ret", Float, nullable=True, comment="close[t1] / close[ts] - 1"),
    Column("sigma", Float, nullable=True, comment="barrier volatility used"),
    Column("label_spec", String(128), nullable=False, comment="LabelSpec as JSON"),
    comment="Triple-barrier labels of the total-return adjusted bars.",
)

predictions = Table(
    "predictions",
    metadata,
    Column("ticker", String(32), primary_key=True),
    Column("ts", TS, primary_key=True, comment="the bar whose window was scored"),
    Column("model", String(64), primary_key=True, comment="bundle name, e.g. lstm_v3"),
    Column("p_down", Float, nullable=False),
    Column("p_flat", Float, nullable=False),
    Column("p_up", Float, nullable=False),
    Column("label", SmallInteger, nullable=False, comment="argmax as -1 / 0 / +1"),
    Column("scored_at", TS, nullable=False),
    comment="Live class probabilities of the champion (the stream concept drift watches).",
)

drift_reports = Table(
    "drift_reports",
    metadata,
    Column("evaluated_at", TS, primary_key=True, comment="end of the evaluated window"),
    Column("model", String(64), primary_key=True),
    Column("level", String(16), nullable=True, comment="none / warn / severe; NULL too few rows"),
    Column("share_drifted", Float, nullable=True),
    Column("reason", Text, nullable=False),
    Column("report", Text, nullable=False, comment="DriftReport.to_dict() as JSON"),
    Column("rollback", Boolean, nullable=False, comment="this evaluation asked for a rollback"),
    Column("decision", Text, nullable=False, comment="DriftDecision.to_dict() incl. the state"),
    comment="One drift evaluation of the live window against the champion's training data.",
)

TABLES: dict[str, Table] = {t.name: t for t in metadata.sorted_tables}
