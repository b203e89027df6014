"""What a target database holds, read without changing it (``observer status``).

Everything comes from the tables the loads commit with their data (``etl_watermark``, ``etl_runs``,
``etl_rejects``, ``etl_flag_lists``, ``etl_schema``) and a row count of each data table, so what it
shows is what the last commit left, whatever run was killed since; all of it is read in one
transaction, so a run committing meanwhile shows in all of it or in none. The connection is read-only: an
SQLite file is neither created nor switched to another journal mode, and a PostgreSQL session refuses
writes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import adbc_driver_manager
import polars as pl

from engine.load import Target, TargetError, error_line, parse_target, sqlite_reader_why
from staging import manifest
from staging.layout import StagingError, part_files, partitions
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

RUN_COLUMNS = (
    "run_id", "started_at", "finished_at", "status", "market_scope", "source", "commits",
    "lines_read", "loaded", "duplicates", "rejected", "held_back",
)
_UTC_TEXT = "%Y-%m-%dT%H:%M:%S%.6f+00:00"
# How long status waits for a writer's lock (a first load keeps SQLite readers out while it commits):
# a command run by hand says so after a few seconds instead of the loader's two minutes.
BUSY_TIMEOUT_MS = 5_000


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
    # The staging directory's half of the state, when one was named: per scope, how much of the archive
    # the manifest says is consumed and whether its newest commit is in the database; per table, the
    # staged partitions and parts.
    staging: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def read_status(url: str, runs: int = 5, staging: Path | None = None) -> Status:
    """The state of the database at ``url`` (and of ``staging``, its staging directory, if given): a
    TargetError (one sentence) if it cannot be read, or if observer-etl never loaded into it."""
    target = Target(parse_target(url), BUSY_TIMEOUT_MS, read_only=True)
    try:
        with target.snapshot():
            state = _read(target, runs)
            if staging is None:
                return state
            return Status(**{**asdict(state), "staging": _staging(staging, target)})
    except StagingError as exc:
        raise TargetError(f"cannot read the staging directory {staging}: {exc}") from None
    except adbc_driver_manager.Error as exc:  # a table it may not read, a lock, a file it cannot read
        why, path = error_line(exc), target.target.path
        raise TargetError(f"cannot read {target.target.redacted}: {sqlite_reader_why(why, path) if path else why}") from None
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


def _staging(staging: Path, target: Target) -> dict[str, Any]:
    """What ``staging`` holds, read without changing it. An interrupted commit (a ``pending-`` folder) is
    listed, not finished or undone: the next run of its scope does that, asking the database."""
    scopes = []
    for scope in manifest.scopes(staging):
        files = manifest.load(staging, scope)
        newest = files.sort("run_id", "commit_seq").tail(1).rows(named=True)
        commit = {"run_id": newest[0]["run_id"], "seq": int(newest[0]["commit_seq"])} if newest else None
        scopes.append({
            "scope": scope,
            "files": files.height,
            "consumed_bytes": int(files["consumed_bytes"].sum() or 0),
            "newest_commit": commit,
            # The two halves agree when the database has the manifest's newest commit (etl_runs.commits).
            "in_database": commit is not None and target.committed_seq(commit["run_id"]) >= commit["seq"],
            "pending": sorted(d.name for d in manifest.scope_dir(staging, scope).glob("pending-*") if d.is_dir()),
        })
    tables = {}
    for t in DATA_TABLES:
        parts = [f for _, _, d in partitions(staging, t) for f in part_files(d)]
        tables[t.name] = {
            "partitions": len({f.parent for f in parts}),
            "parts": len(parts),
            "bytes": sum(f.stat().st_size for f in parts),
        }
    return {"path": str(staging), "scopes": scopes, "tables": tables}


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
