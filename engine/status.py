"""What a target database holds, read without changing it (``observer status``).

Everything comes from the tables the loads commit with their data (``etl_watermark``, ``etl_runs``,
``etl_rejects``, ``etl_flag_lists``, ``etl_schema``) and a row count of each data table, so what it
shows is what the last commit left, whatever run was killed since; the database's part is read in one
transaction, so a run committing meanwhile shows in all of it or in none. The connection is read-only: an
SQLite file is neither created nor switched to another journal mode, and a PostgreSQL session refuses
writes. A staging directory's manifests, the watermark's other half, are read just before it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import adbc_driver_manager
import polars as pl

from engine.load import Target, TargetError, error_line, parse_target, sqlite_reader_why
from schemas.tables import (
    ALL_TABLES,
    DATA_TABLES,
    ETL_FLAG_LISTS,
    ETL_REJECTS,
    ETL_RUNS,
    ETL_SCHEMA,
    ETL_WATERMARK,
    Table,
)
from staging import manifest
from staging.layout import StagingError, part_files, partitions

RUN_COLUMNS = (
    "run_id", "started_at", "finished_at", "status", "market_scope", "source", "commits",
    "lines_read", "loaded", "duplicates", "rejected", "held_back",
)
_UTC_TEXT = "%Y-%m-%dT%H:%M:%S%.6f+00:00"
# How long status waits for a writer's lock (a first load keeps SQLite readers out while it commits):
# a command run by hand says so after a few seconds instead of the loader's two minutes.
BUSY_TIMEOUT_MS = 5_000


@dataclass(frozen=True)
class ScopeState:
    """One market scope's manifest: how much of the archive it says is consumed, and its newest commit."""

    scope: str
    files: int
    consumed_bytes: int
    newest_commit: dict[str, object] | None  # {"run_id", "seq"}; None before the first commit
    in_database: bool  # the database has the newest commit: the two halves of the watermark agree
    pending: list[str]  # interrupted commits (``pending-`` folders): the next run of the scope settles them


@dataclass(frozen=True)
class StagingState:
    path: str  # absolute
    scopes: list[ScopeState]
    tables: dict[str, dict[str, int]]  # per table: partitions, parts, bytes


@dataclass(frozen=True)
class Status:
    """A target's state; times are UTC in ISO 8601 text (as ``--json`` prints them)."""

    target: str  # the URL without its password
    tables: dict[str, int]  # rows of each data table and of etl_rejects
    watermarks: list[dict[str, object]]  # etl_watermark, by source_type and market
    runs: list[dict[str, object]]  # the newest runs first
    runs_by_status: dict[str, int]
    rejects_by_reason: dict[str, int]  # the most frequent first
    holidays: dict[str, list[str]]  # per market: the holiday list its rows are flagged with
    schema_versions: dict[str, str]
    staging: StagingState | None = None  # the staging directory's half of the state, when one was named

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def read_status(url: str, runs: int = 5, staging: Path | None = None) -> Status:
    """The state of the database at ``url`` (and of ``staging``, its staging directory, if given): a
    TargetError (one sentence) if it cannot be read, or if observer-etl never loaded into it."""
    # The manifest before the database: a run commits to the database first and promotes its manifest
    # after, so a database read later has every commit a manifest read earlier names.
    staged = _read_staging(staging) if staging is not None else None
    target = Target(parse_target(url), BUSY_TIMEOUT_MS, read_only=True)
    try:
        with target.snapshot():
            state = _read(target, runs)
            if staged is None:
                return state
            path, manifests, tables = staged
            scopes = [
                ScopeState(
                    scope, files.height, int(files["consumed_bytes"].sum()), None if newest is None else
                    {"run_id": newest[0], "seq": newest[1]},
                    newest is not None and target.committed_seq(newest[0]) >= newest[1], pend,
                )
                for scope, files, newest, pend in manifests
            ]
            return replace(state, staging=StagingState(path, scopes, tables))
    except adbc_driver_manager.Error as exc:  # a table it may not read, a lock, a file it cannot read
        why, db_file = error_line(exc), target.target.path
        raise TargetError(f"cannot read {target.target.redacted}: {sqlite_reader_why(why, db_file) if db_file else why}") from None
    except (pl.exceptions.PolarsError, ValueError) as exc:  # a value written by another tool
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TargetError(f"cannot read {target.target.redacted}: a value in it is not as observer-etl writes it ({why})") from None
    finally:
        target.close()


def _read(target: Target, runs: int) -> Status:
    """What ``read_status`` reports, read through ``target``."""
    found = target.existing([t.name for t in (ETL_SCHEMA, *ALL_TABLES)])
    if ETL_RUNS.name not in found:
        raise TargetError(
            f"{target.target.redacted} holds no observer-etl tables (no {ETL_RUNS.name}): nothing was loaded into it yet"
        )

    def pairs(table: Table, sql: str) -> list[tuple[Any, ...]]:  # an older database may lack the table
        return target.rows(sql) if table.name in found else []


    newest = target.rows(
        f"SELECT {', '.join(RUN_COLUMNS)} FROM {ETL_RUNS.name} ORDER BY started_at DESC, run_id DESC "
        f"LIMIT {int(runs)}"
    )
    run_frame = pl.DataFrame(newest, schema=list(RUN_COLUMNS), orient="row", infer_schema_length=None)
    marks = (
        target.read_table(ETL_WATERMARK.name, order_by="source_type, market")
        if ETL_WATERMARK.name in found
        else pl.DataFrame(schema=ETL_WATERMARK.polars_schema())
    )
    by_status = target.rows(f"SELECT status, count(*) FROM {ETL_RUNS.name} GROUP BY status ORDER BY status")
    by_reason = pairs(
        ETL_REJECTS, f"SELECT reason, count(*) AS n FROM {ETL_REJECTS.name} GROUP BY reason ORDER BY n DESC, reason"
    )
    versions = pairs(ETL_SCHEMA, f"SELECT table_name, schema_version FROM {ETL_SCHEMA.name} ORDER BY table_name")
    lists = target.flag_lists() if ETL_FLAG_LISTS.name in found else {}
    return Status(
        target=target.target.redacted,
        tables={t.name: target.count(t.name) for t in (*DATA_TABLES, ETL_REJECTS) if t.name in found},
        watermarks=_utc_text(marks, ("last_processed_ts", "updated_at")).to_dicts(),
        runs=_utc_text(run_frame, ("started_at", "finished_at")).to_dicts(),
        runs_by_status={str(k): int(n) for k, n in by_status},
        rejects_by_reason={str(k): int(n) for k, n in by_reason},
        holidays={m: sorted(d.isoformat() for d in days) for m, days in sorted(lists.items())},
        schema_versions={str(k): str(v) for k, v in versions},
    )


_Manifest = tuple[str, pl.DataFrame, "tuple[str, int] | None", list[str]]  # scope, files, newest commit, pending


def _read_staging(staging: Path) -> tuple[str, list[_Manifest], dict[str, dict[str, int]]]:
    """What ``staging`` holds, read without changing it: each scope's manifest (an interrupted commit is
    listed, not settled: settling is a write, and the next run of its scope does it), and the staged
    partitions, parts and bytes of each table. A folder it cannot read, a partition folder it does not
    know, or a damaged manifest is a TargetError: a count that skipped them would look exact."""
    try:
        manifests: list[_Manifest] = []
        for scope in manifest.scopes(staging):
            files = manifest.load(staging, scope)
            if files["consumed_bytes"].null_count():
                raise StagingError(f"{manifest.scope_dir(staging, scope)} records files without their consumed bytes")
            pend = [p.name for p in manifest.pending(staging, scope)]
            manifests.append((scope, files, manifest.newest_commit(files), pend))
        tables = {}
        for t in DATA_TABLES:
            found = partitions(staging, t)
            sizes = [n for _, _, d in found for f in part_files(d) if (n := _size(f)) is not None]
            tables[t.name] = {"partitions": len(found), "parts": len(sizes), "bytes": sum(sizes)}
    except (OSError, ValueError, StagingError, pl.exceptions.PolarsError) as exc:
        why = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise TargetError(f"cannot read the staging directory {staging}: {why}") from None
    return str(staging.absolute()), manifests, tables


def _size(part: Path) -> int | None:
    """A staged part's bytes; None for one a run beside this made obsolete and removed meanwhile."""
    try:
        return part.stat().st_size
    except FileNotFoundError:
        return None


def _utc_text(df: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    """Times as UTC ISO text, from either target: SQLite stores them as naive UTC text, PostgreSQL as
    ``timestamptz`` (a zoned Polars datetime)."""
    if df.height == 0:  # no values to go by: SQLite's driver types an empty result's columns Int64
        return df.with_columns(pl.col(c).cast(pl.String) for c in columns)

    def text(name: str) -> pl.Expr:
        col = pl.col(name)
        dtype = df.schema[name]
        if dtype == pl.String or dtype == pl.Null:
            col = col.cast(pl.String).str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", time_unit="us", time_zone="UTC")
        elif isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
            col = col.dt.replace_time_zone("UTC")
        return col.dt.convert_time_zone("UTC").dt.to_string(_UTC_TEXT)

    return df.with_columns(text(c) for c in columns)
