"""Test helpers: record builders in the contract's exact shapes, and database/staging snapshots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl

from engine.config import RunOptions
from engine.load import Target, parse_target
from engine.pipeline import RunSummary, run_etl
from schemas.tables import DATA_TABLES, ETL_FLAG_LISTS, ETL_REJECTS, ETL_WATERMARK, Table

REPO = Path(__file__).resolve().parent.parent
VOLATILE = {"etl_timestamp", "run_id", "updated_at"}


def tick(
    ts: str = "2026-01-30T13:05:12.844213+09:00",
    symbol: str = "005930",
    execution_time: str | None = "130512",
    price: Any = 158400,
    acc: Any = 18234567,
    session: str = "observer-3f0c2a9e-1b7d-4c55-9a0e-2d8f6b1c7e44",
    source: str = "websocket",
    **extra: Any,
) -> str:
    """A K1 line exactly as the collector writes it (default separators, Korean unescaped)."""
    rec: dict[str, Any] = {
        "timestamp": ts,
        "symbol": symbol,
        "execution_time": execution_time,
        "price": {"current": price, "open": 157000, "high": 159800, "low": 156200, "change_rate": 1.54},
        "volume": {"accumulated": acc, "trade_value": 2881234567890},
        "bid_ask": {"ask_price": 158500, "bid_price": 158400},
        "source": source,
        "session_id": session,
    }
    rec.update(extra)
    return json.dumps(rec, ensure_ascii=False)


def swing(
    ts: str = "2026-01-30T13:11:47.203518+09:00",
    symbol: str = "005930",
    close: Any = 158400,
    volume: Any = 18234567,
    session: str = "observer-3f0c2a9e-1b7d-4c55-9a0e-2d8f6b1c7e44",
    **extra: Any,
) -> str:
    rec: dict[str, Any] = {
        "ts": ts, "session": session, "dataset": "track_a_swing", "market": "kr_stocks", "symbol": symbol,
        "price": {"open": 157000, "high": 159800, "low": 156200, "close": close}, "volume": volume,
        "bid_price": None, "ask_price": None, "source": "kis",
    }
    rec.update(extra)
    return json.dumps(rec, ensure_ascii=False)


def write_lines(path: Path, lines: list[str], *, final_newline: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + ("\n" if final_newline else ""), encoding="utf-8")
    return path


def run(source: Path, target: str, staging: Path, **kw: Any) -> RunSummary:
    """One library run, with the accounting invariant checked on every run."""
    summary = run_etl(RunOptions(source=source, target=target, staging=staging, **kw))
    d = summary.to_dict()
    assert d["loaded"] + d["duplicates"] + d["rejected"] == d["lines_read"], d
    return summary


def rows(target: str, sql: str) -> list[tuple]:
    """The rows a SQL statement returns from the target, through the engine's own connection."""
    t = Target(parse_target(target))
    try:
        return t._exec(sql)
    finally:
        t.close()


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO / "cli.py"), *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=600
    )


def _sortable(df: pl.DataFrame, drop: set[str]) -> pl.DataFrame:
    keep = [c for c in df.columns if c not in drop]
    return df.select(keep).sort(keep, nulls_last=True)


def db_frames(target: str, names: list[str]) -> dict[str, pl.DataFrame]:
    """Whole tables through one connection, dates and times as text (``_normalise_types``)."""
    t = Target(parse_target(target))
    try:
        return {name: _normalise_types(t.read_table(name)) for name in names}
    finally:
        t.close()


def db_snapshot(target: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every data table, rejects, watermarks and flag lists, without the columns that name the run or the clock."""
    frames = db_frames(target, [t.name for t in (*DATA_TABLES, ETL_REJECTS, ETL_WATERMARK, ETL_FLAG_LISTS)])
    return {name: _sortable(df, VOLATILE).rows() for name, df in frames.items()}


def _normalise_types(df: pl.DataFrame) -> pl.DataFrame:
    """SQLite returns ISO text, PostgreSQL native types: compare both as text."""
    return df.with_columns(
        [
            pl.col(c).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S.%6f")
            if isinstance(df.schema[c], pl.Datetime)
            else pl.col(c).cast(pl.String) if isinstance(df.schema[c], pl.Date) else pl.col(c)
            for c in df.columns
        ]
    )


def staged_frame(staging: Path, table: Table) -> pl.DataFrame | None:
    """Every staged row of ``table`` (partition columns included, dates and times as text), None if none."""
    files = sorted((staging / table.name).glob("**/part-*.parquet"))
    return _normalise_types(pl.read_parquet(files, hive_partitioning=True)) if files else None


def staged_snapshot(staging: Path) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table in DATA_TABLES:
        df = staged_frame(staging, table)
        out[table.name] = [] if df is None else _sortable(df, VOLATILE).rows()
    return out
