"""Every table observer-etl writes, defined once.

The Arrow schema (staging and ingest), the Polars schema (engine) and the DDL of each target
database are all derived from these definitions, so a column is added in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Literal

import polars as pl

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

# The version of the table definitions below, recorded per table in ``etl_schema`` by the loader. Bump the
# minor part when a nullable column is added (older tables are migrated in place with ADD COLUMN), the
# major part for anything an existing table cannot be migrated to.
SCHEMA_VERSION = "1.0"

Logical = Literal["text", "int64", "float64", "date", "timestamp"]
Dialect = Literal["sqlite", "postgresql"]


@cache
def _arrow_type(logical: Logical) -> pa.DataType:
    """The Arrow type of a logical type. pyarrow and NumPy are imported where rows are converted for a
    load, not with this module: a run with nothing new never needs them (~0.25 s of its start)."""
    import pyarrow as pa

    return {
        "text": pa.string(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }[logical]


_POLARS: dict[Logical, pl.DataType] = {
    "text": pl.String(),
    "int64": pl.Int64(),
    "float64": pl.Float64(),
    "date": pl.Date(),
    "timestamp": pl.Datetime("us", "UTC"),
}
# SQLite has no date or time type: dates and timestamps are stored as ISO-8601 text (UTC, no zone), in
# exactly the form the ADBC SQLite driver writes for Arrow dates and timestamps ("%Y-%m-%d" and
# "%Y-%m-%dT%H:%M:%S%.6f"). The loader formats them itself, vectorized, instead of leaving it to the
# driver one value at a time: that makes a keyed bulk ingest about 1.4x faster, and the stored text is
# the same. Arrow's cast to string does it about twice as fast as Polars' strftime (see _sqlite_text).
SQLITE_TEXT_TYPES: frozenset[Logical] = frozenset({"date", "timestamp"})
# What PostgreSQL's information_schema.columns.data_type reports for each logical type (schema checks).
PG_INFO_TYPE: dict[Logical, str] = {
    "text": "text",
    "int64": "bigint",
    "float64": "double precision",
    "date": "date",
    "timestamp": "timestamp with time zone",
}
# SQLite through ADBC stores dates as ISO text and timestamps as ISO-8601 UTC text without a zone.
_SQL: dict[Dialect, dict[Logical, str]] = {
    "sqlite": {"text": "TEXT", "int64": "INTEGER", "float64": "REAL", "date": "TEXT", "timestamp": "TEXT"},
    "postgresql": {
        "text": "TEXT",
        "int64": "BIGINT",
        "float64": "DOUBLE PRECISION",
        "date": "DATE",
        "timestamp": "TIMESTAMPTZ",
    },
}


@dataclass(frozen=True)
class Column:
    name: str
    type: Logical
    nullable: bool = True


@dataclass(frozen=True)
class Table:
    """A target table: columns, idempotency key, and the order that picks the winning copy."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()
    # Of several copies with one key, the smallest value of these columns wins.
    winner_order: tuple[str, ...] = ()
    # Hive partition columns of the staged Parquet (not stored inside the files).
    partition_by: tuple[str, ...] = ()
    source_type: str | None = None
    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def value_columns(self) -> list[str]:
        return [c for c in self.column_names if c not in self.key]

    @property
    def file_columns(self) -> list[str]:
        """Columns stored inside staged Parquet files (partition columns live in the path)."""
        return [c for c in self.column_names if c not in self.partition_by]

    def arrow_schema(self, columns: list[str] | None = None) -> pa.Schema:
        cols = {c.name: c for c in self.columns}
        names = columns if columns is not None else self.column_names
        import pyarrow as pa

        return pa.schema([pa.field(n, _arrow_type(cols[n].type), cols[n].nullable) for n in names])

    def wire_table(self, df: pl.DataFrame, dialect: Dialect, columns: list[str] | None = None) -> pa.Table:
        """The Arrow table a bulk ingest into ``dialect`` sends (SQLite: dates and times as text)."""
        import pyarrow as pa

        cols = {c.name: c for c in self.columns}
        names = columns if columns is not None else self.column_names
        df = df.select(names)
        if dialect != "sqlite":
            return df.to_arrow().cast(self.arrow_schema(names))
        # Text goes as Polars holds it (Arrow string_view, no copy); the driver binds it like any string.
        base = df.to_arrow(compat_level=pl.CompatLevel.newest())
        arrays = [
            _sqlite_text(df[n].cast(_POLARS[cols[n].type]), cols[n].type)
            if cols[n].type in SQLITE_TEXT_TYPES
            else base.column(n).cast(pa.string_view() if cols[n].type == "text" else _arrow_type(cols[n].type))
            for n in names
        ]
        return pa.Table.from_arrays(
            arrays, schema=pa.schema([pa.field(n, a.type, cols[n].nullable) for n, a in zip(names, arrays)])
        )

    def polars_schema(self, columns: list[str] | None = None) -> pl.Schema:
        cols = {c.name: c for c in self.columns}
        names = columns if columns is not None else self.column_names
        return pl.Schema({n: _POLARS[cols[n].type] for n in names})

    def column_ddl(self, dialect: Dialect, name: str) -> str:
        """One column's definition (for CREATE TABLE and for ALTER TABLE ... ADD COLUMN)."""
        c = {c.name: c for c in self.columns}[name]
        text_key = dialect == "postgresql" and c.type == "text" and c.name in self.key
        null = "" if c.nullable and c.name not in self.key else " NOT NULL"
        collate = ' COLLATE "C"' if text_key else ""
        return f"{c.name} {sql_type(dialect, c.type)}{collate}{null}"

    def create_ddl(self, dialect: Dialect) -> str:
        cols = [self.column_ddl(dialect, c.name) for c in self.columns]
        cols.append(f"PRIMARY KEY ({', '.join(self.key)})")
        # SQLite: cluster rows on the key instead of a rowid table plus a key index (half the B-tree writes).
        clustered = " WITHOUT ROWID" if dialect == "sqlite" else ""
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n  " + ",\n  ".join(cols) + f"\n){clustered}"

    def index_name(self, idx: tuple[str, ...]) -> str:
        return f"ix_{self.name}_{'_'.join(idx)}"

    def index_ddl(self, idx: tuple[str, ...]) -> str:
        return f"CREATE INDEX IF NOT EXISTS {self.index_name(idx)} ON {self.name} ({', '.join(idx)})"


def _sqlite_text(col: pl.Series, logical: Logical) -> pa.Array:
    """A date or UTC timestamp column as the ADBC SQLite driver's text: "2026-01-05", "2026-01-05T00:30:00.000000".

    Arrow's cast writes "2026-01-05 00:30:00.000000" (six digits for microseconds, always); the space
    becomes the ISO "T". A column of one value (etl_timestamp, trade_date) is formatted once, and a
    timestamp column without nulls over a span of days by table lookups (``_iso_us``).
    """
    import pyarrow as pa

    if col.len() > 1 and col.null_count() == 0 and col.min() == col.max():
        return pa.repeat(_sqlite_text(col.head(1), logical)[0], col.len())
    if logical == "date":
        return col.to_arrow().cast(pa.string())
    naive = col.dt.replace_time_zone(None)
    fast = _iso_us(naive.dt.cast_time_unit("us").to_physical().to_numpy()) if col.null_count() == 0 else None
    return fast if fast is not None else iso_by_arrow(naive)


def iso_by_arrow(naive: pl.Series) -> pa.Array:
    """A naive timestamp column as ISO text through Arrow's cast, value by value (any value, nulls too)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.utf8_replace_slice(naive.to_arrow().cast(pa.string()), start=10, stop=11, replacement="T")


_US_PER_DAY = 86_400_000_000


def _digit_rows(n: int, width: int) -> np.ndarray:
    """The zero-padded text of 0..n-1 as rows of ASCII bytes, built by arithmetic (86,400 f-strings
    cost a tenth of a second)."""
    import numpy as np

    return (np.arange(n)[:, None] // 10 ** np.arange(width - 1, -1, -1) % 10 + ord("0")).astype(np.uint8)


def _as_ints(rows: np.ndarray) -> np.ndarray:
    """Rows of 2, 4 or 8 bytes as one little-endian integer each."""
    import numpy as np

    return np.ascontiguousarray(rows).view(f"<u{rows.shape[1]}").ravel()


@dataclass(frozen=True)
class _IsoParts:
    """The text of each second of a day ("HH:MM:SS"), of 0000..9999 and of 00..99, as little-endian
    integers of their bytes, and the record they are gathered into: a timestamp's text is a handful of
    integer gathers into one fixed-width record."""

    clock: np.ndarray
    digits4: np.ndarray
    digits2: np.ndarray
    record: np.dtype  # "YYYY-MM-" "DD" "T" "HH:MM:SS" "." "ffff" "ff"


@cache
def _iso_parts() -> _IsoParts:
    import numpy as np

    sixty, second = _digit_rows(60, 2), np.arange(86_400)
    colon = np.full((86_400, 1), ord(":"), np.uint8)
    clock = np.hstack([sixty[second // 3600], colon, sixty[second // 60 % 60], colon, sixty[second % 60]])
    record = np.dtype(
        {
            "names": ["date8", "date2", "t", "clock", "dot", "frac4", "frac2"],
            "formats": ["<u8", "<u2", "u1", "<u8", "u1", "<u4", "<u2"],
            "offsets": [0, 8, 10, 11, 19, 20, 24],
            "itemsize": 26,
        }
    )
    return _IsoParts(_as_ints(clock), _as_ints(_digit_rows(10_000, 4)), _as_ints(_digit_rows(100, 2)), record)


def _iso_us(us: np.ndarray) -> pa.Array | None:
    """Microseconds since the epoch as "YYYY-MM-DDTHH:MM:SS.ffffff" text, or None outside years 1000-9999,
    over more than 1,000 days or for more than 50M values (Arrow's cast does those).

    Arrow's cast formats value by value: 0.28 s for a million timestamps, on the loading thread, twice
    for every tick (7 % of that thread's samples in a 10M-line SQLite run). Here each part of the text
    is gathered from a small table of its texts into one fixed-width buffer: the same bytes in a quarter
    to a half of the time (the 1M bench archive's ticks in wire form: 0.10-0.14 s against 0.20 s).
    """
    import numpy as np
    import pyarrow as pa

    if not 0 < us.shape[0] <= 50_000_000:  # offsets are 32-bit
        return None
    parts = _iso_parts()
    days = us // _US_PER_DAY
    first, last = int(days.min()), int(days.max())
    if last - first > 1_000 or not (-354_285 <= first and last <= 2_932_896):  # 1000-01-01 .. 9999-12-31
        return None
    epoch = np.datetime64("1970-01-01", "D")
    dates = np.array([str(epoch + np.timedelta64(d, "D")) for d in range(first, last + 1)], dtype="S10")
    date_bytes = dates.view(np.uint8).reshape(-1, 10)
    tod = us - days * _US_PER_DAY
    sec = tod // 1_000_000
    frac = tod - sec * 1_000_000
    frac4 = frac // 100
    day = days - first
    out = np.empty(us.shape[0], dtype=parts.record)
    out["date8"] = date_bytes[:, :8].copy().view("<u8").ravel()[day]
    out["date2"] = date_bytes[:, 8:].copy().view("<u2").ravel()[day]
    out["t"] = ord("T")
    out["clock"] = parts.clock[sec]
    out["dot"] = ord(".")
    out["frac4"] = parts.digits4[frac4]
    out["frac2"] = parts.digits2[frac - frac4 * 100]
    n = us.shape[0]
    offsets = np.arange(0, 26 * (n + 1), 26, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out))


def sql_type(dialect: Dialect, logical: Logical) -> str:
    return _SQL[dialect][logical]


def schema_version_tuple(version: str) -> tuple[int, ...]:
    """``"1.2"`` -> ``(1, 2)``; raises ValueError for anything else."""
    return tuple(int(p) for p in version.strip().split("."))


def _meta(session: bool = True) -> tuple[Column, ...]:
    """The design document's common meta columns (section 7.2), plus the source line for lineage."""
    cols = [
        Column("schema_version", "text", False),
        Column("etl_timestamp", "timestamp", False),
        Column("source_file", "text", False),
        Column("source_line", "int64", False),
        Column("quality_flag", "text", False),
    ]
    if session:
        cols.append(Column("session_id", "text"))
    return tuple(cols)


SCALP_TICKS = Table(
    name="scalp_ticks",
    columns=(
        Column("symbol", "text", False),
        Column("market", "text", False),
        Column("trade_date", "date", False),
        Column("event_time", "timestamp", False),
        Column("acc_volume", "int64", False),
        # 'exchange': event_time is the exchange's execution_time; 'receive': none was written (v0 lines, a
        # null execution_time), so event_time is the winning copy's receive time truncated to the second.
        Column("time_source", "text", False),
        Column("recv_time", "timestamp", False),
        Column("price", "int64", False),
        Column("day_open", "int64"),
        Column("day_high", "int64"),
        Column("day_low", "int64"),
        Column("change_rate", "float64"),
        Column("acc_trade_value", "int64"),
        Column("tick_volume", "int64"),
        Column("bid_price", "int64"),
        Column("ask_price", "int64"),
        *_meta(),
    ),
    key=("symbol", "trade_date", "event_time", "acc_volume"),
    indexes=(("event_time",),),  # symbol + time queries use the key (symbol, trade_date, event_time, ...)
    # A copy with the exchange time first ('exchange' < 'receive'), then the earliest received.
    winner_order=("time_source", "recv_time", "source_file", "source_line"),
    partition_by=("market", "trade_date"),
    source_type="scalp",
)

SWING_SNAPSHOTS = Table(
    name="swing_snapshots",
    columns=(
        Column("symbol", "text", False),
        Column("market", "text", False),
        Column("trade_date", "date", False),
        Column("snap_time", "timestamp", False),
        Column("day_open", "int64"),
        Column("day_high", "int64"),
        Column("day_low", "int64"),
        Column("close", "int64", False),
        Column("acc_volume", "int64", False),
        Column("bid_price", "int64"),
        Column("ask_price", "int64"),
        *_meta(),
    ),
    key=("symbol", "snap_time"),
    indexes=(("snap_time",), ("trade_date", "symbol")),  # the key serves symbol + time
    winner_order=("snap_time", "source_file", "source_line"),
    partition_by=("market", "trade_date"),
    source_type="swing",
)

MARKET_UNIVERSE = Table(
    name="market_universe",
    columns=(
        Column("symbol", "text", False),
        Column("market", "text", False),
        Column("date", "date", False),
        Column("generated_at", "timestamp"),
        *_meta(session=False),
    ),
    key=("symbol", "market", "date"),
    indexes=(("date",),),
    winner_order=("source_file", "source_line"),
    partition_by=("market", "date"),
    source_type="universe",
)

ETL_REJECTS = Table(
    name="etl_rejects",
    columns=(
        Column("source_file", "text", False),
        Column("line_number", "int64", False),
        Column("source_type", "text", False),
        Column("reason", "text", False),
        Column("raw_line", "text"),
        Column("run_id", "text", False),
        Column("etl_timestamp", "timestamp", False),
    ),
    key=("source_file", "line_number"),
    indexes=(("reason",),),
)

ETL_WATERMARK = Table(
    name="etl_watermark",
    columns=(
        Column("source_type", "text", False),
        Column("market", "text", False),
        Column("last_processed_ts", "timestamp"),
        Column("last_processed_file", "text"),
        Column("run_id", "text", False),
        Column("updated_at", "timestamp", False),
    ),
    key=("source_type", "market"),
)

ETL_RUNS = Table(
    name="etl_runs",
    columns=(
        Column("run_id", "text", False),
        Column("started_at", "timestamp", False),
        Column("finished_at", "timestamp"),
        Column("status", "text", False),
        Column("market_scope", "text", False),
        Column("source", "text", False),
        Column("commits", "int64", False),
        Column("lines_read", "int64", False),
        Column("loaded", "int64", False),
        Column("duplicates", "int64", False),
        Column("rejected", "int64", False),
        Column("held_back", "int64", False),
        Column("summary_json", "text"),
    ),
    key=("run_id",),
)

# The holiday list each market's ticks and snapshots were flagged with (``quality_flag``), written in the
# transaction of every commit that writes or flags them again: a run with another list knows which days to
# flag again, and a database from before this table, or with a market missing, has every day checked once.
ETL_FLAG_LISTS = Table(
    name="etl_flag_lists",
    columns=(
        Column("market", "text", False),
        Column("holidays", "text", False),  # the ISO dates, comma-separated, in order ('' for none)
        Column("run_id", "text", False),
        Column("updated_at", "timestamp", False),
    ),
    key=("market",),
)

# The schema version each table was created or last migrated with (written by the loader's ensure_schema).
ETL_SCHEMA = Table(
    name="etl_schema",
    columns=(
        Column("table_name", "text", False),
        Column("schema_version", "text", False),
        Column("updated_at", "timestamp", False),
    ),
    key=("table_name",),
)

DATA_TABLES: tuple[Table, ...] = (SCALP_TICKS, SWING_SNAPSHOTS, MARKET_UNIVERSE)
ALL_TABLES: tuple[Table, ...] = (*DATA_TABLES, ETL_REJECTS, ETL_WATERMARK, ETL_RUNS, ETL_FLAG_LISTS)
