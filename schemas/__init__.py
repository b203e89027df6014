"""Record kinds of the archive and tables of the target, each defined once."""

from schemas.records import DEFAULT_MARKET, RECORD_SCHEMAS, REJECT_REASONS, Kind
from schemas.tables import (
    ALL_TABLES,
    DATA_TABLES,
    ETL_FLAG_LISTS,
    ETL_REJECTS,
    ETL_RUNS,
    ETL_WATERMARK,
    MARKET_UNIVERSE,
    SCALP_TICKS,
    SCHEMA_VERSION,
    SWING_SNAPSHOTS,
    Column,
    Table,
)

__all__ = [
    "ALL_TABLES", "DATA_TABLES", "DEFAULT_MARKET", "ETL_FLAG_LISTS", "ETL_REJECTS", "ETL_RUNS", "ETL_WATERMARK",
    "MARKET_UNIVERSE", "RECORD_SCHEMAS", "REJECT_REASONS", "SCALP_TICKS", "SCHEMA_VERSION",
    "SWING_SNAPSHOTS", "Column", "Kind", "Table",
]
