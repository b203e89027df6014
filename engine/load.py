"""Load: bulk-write staged deltas into the target database through ADBC, one transaction a commit.

New rows go in by bulk ingest (``adbc_ingest``, append); rows that replace a loaded copy go through a
temporary table and ``INSERT ... ON CONFLICT DO UPDATE`` guarded by the winner order, so replaying a
delta can never let a later copy overwrite an earlier one. The watermark and the run's commit
counter are written in the same transaction as the data.
"""

from __future__ import annotations

import itertools
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlsplit

import polars as pl
import pyarrow as pa

from schemas.tables import ALL_TABLES, ETL_REJECTS, ETL_RUNS, ETL_WATERMARK, Dialect, Table


def is_key_conflict(exc: BaseException) -> bool:
    """A unique-key violation, however the driver classifies it (SQLite's says InternalError)."""
    import adbc_driver_manager

    text = str(exc)
    return isinstance(exc, adbc_driver_manager.IntegrityError) or "UNIQUE constraint" in text or "23505" in text


class TargetError(Exception):
    """A target that cannot be used; the message is one readable sentence for the user."""


@dataclass(frozen=True)
class TargetURL:
    dialect: Dialect
    url: str  # as given (may hold a password: never print it)
    path: Path | None = None  # SQLite file

    @property
    def redacted(self) -> str:
        return redact(self.url)


def redact(url: str) -> str:
    """The URL with any password replaced, for output, logs and ``etl_runs``."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def parse_target(url: str) -> TargetURL:
    """Validate a target URL: ``sqlite:///rel.db``, ``sqlite:////abs.db``, ``postgresql://...``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if not url.lower().startswith("sqlite:///") or parts.netloc or len(parts.path) < 2:
            raise TargetError(
                f"invalid SQLite URL {redact(url)!r}: use sqlite:///relative.db or sqlite:////absolute/path.db"
            )
        return TargetURL("sqlite", url, Path(unquote(parts.path[1:])))
    if scheme in ("postgresql", "postgres"):
        if not parts.hostname and not parts.path.strip("/"):
            raise TargetError(f"invalid PostgreSQL URL {redact(url)!r}: use postgresql://user@host:port/database")
        return TargetURL("postgresql", url)
    raise TargetError(f"unsupported target {redact(url)!r}: use a sqlite:/// or postgresql:// URL")


_tmp_counter = itertools.count()


class Target:
    """One open connection to the target database, in autocommit mode with explicit transactions."""

    def __init__(self, target: TargetURL, busy_timeout_ms: int = 120_000) -> None:
        self.target = target
        self.dialect: Dialect = target.dialect
        try:
            if self.dialect == "sqlite":
                import adbc_driver_sqlite.dbapi as driver

                assert target.path is not None
                if target.path.parent and not target.path.parent.exists():
                    raise TargetError(f"cannot open {target.redacted}: directory {target.path.parent} does not exist")
                self.conn = driver.connect(str(target.path), autocommit=True)
            else:
                import adbc_driver_postgresql.dbapi as driver

                self.conn = driver.connect(_pg_uri(target.url), autocommit=True)
        except TargetError:
            raise
        except Exception as exc:  # noqa: BLE001 - driver errors become one sentence
            raise TargetError(f"cannot connect to {target.redacted}: {_first_line(exc)}") from None
        self.cur = self.conn.cursor()
        if self.dialect == "sqlite":
            self._exec("PRAGMA journal_mode=WAL")
            self._exec(f"PRAGMA busy_timeout={busy_timeout_ms}")
            self._exec("PRAGMA synchronous=NORMAL")

    # -- plumbing ---------------------------------------------------------------------------------
    def _exec(self, sql: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        self.cur.execute(sql, parameters=params)
        try:
            return self.cur.fetchall()
        except Exception:  # noqa: BLE001 - statements without a result set
            return []

    def ph(self, i: int) -> str:
        """The i-th (1-based) bind placeholder."""
        return "?" if self.dialect == "sqlite" else f"${i}"

    def close(self) -> None:
        try:
            self.cur.close()
            self.conn.close()
        except Exception:  # noqa: BLE001
            pass

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._exec("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
        try:
            yield
        except BaseException:
            try:
                self._exec("ROLLBACK")
            except Exception:  # noqa: BLE001 - the connection may be gone; the server rolls back
                pass
            raise
        self._exec("COMMIT")

    def ensure_schema(self) -> None:
        with self.transaction():
            for table in ALL_TABLES:
                for stmt in table.ddl(self.dialect):
                    self._exec(stmt)

    def _arrow(self, table: Table, df: pl.DataFrame) -> pa.Table:
        return df.select(table.column_names).to_arrow().cast(table.arrow_schema())

    # -- data -------------------------------------------------------------------------------------
    def append(self, table: Table, df: pl.DataFrame) -> int:
        """Bulk-ingest rows known to be new (raises on a key conflict)."""
        if df.height == 0:
            return 0
        self.cur.adbc_ingest(table.name, self._arrow(table, df), mode="append")
        return df.height

    def upsert(self, table: Table, df: pl.DataFrame) -> tuple[int, int]:
        """Insert or replace rows by key: (inserted, updated).

        A row replaces the loaded one only if it wins the key (smaller winner order), or if it is the
        same copy with a changed value (a recomputed tick_volume); replaying a delta changes nothing.
        """
        if df.height == 0:
            return 0, 0
        tmp = f"etl_tmp_{table.name}_{next(_tmp_counter)}"
        self.cur.adbc_ingest(tmp, self._arrow(table, df), mode="create", temporary=True)
        src = f"temp.{tmp}" if self.dialect == "sqlite" else tmp
        on = " AND ".join(f"s.{k} = t.{k}" for k in table.key)
        existing = int(self._exec(f"SELECT count(*) FROM {src} s JOIN {table.name} t ON {on}")[0][0])
        cols = ", ".join(table.column_names)
        sets = ", ".join(f"{c} = excluded.{c}" for c in table.value_columns)
        compared = [c for c in table.value_columns if c not in ("etl_timestamp", "schema_version", "run_id")]
        differs = " OR ".join(f"excluded.{c} IS DISTINCT FROM {table.name}.{c}" for c in compared)
        guard = f" WHERE {differs}"
        if table.winner_order:
            new = ", ".join(f"excluded.{c}" for c in table.winner_order)
            old = ", ".join(f"{table.name}.{c}" for c in table.winner_order)
            guard = f" WHERE ({new}) < ({old}) OR (({new}) = ({old}) AND ({differs}))"
        self._exec(
            f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {src} WHERE true "
            f"ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {sets}{guard}"
        )
        changed = self._changes()
        self._exec(f"DROP TABLE {src}")
        inserted = df.height - existing
        return inserted, changed - inserted

    def _changes(self) -> int:
        if self.dialect == "sqlite":
            return int(self._exec("SELECT changes()")[0][0])
        return int(self.cur.rowcount)

    def replace_partition(self, table: Table, market: str, day: date, df: pl.DataFrame) -> tuple[int, int]:
        """Replace one (market, date) of a table wholesale: (rows before, rows after)."""
        date_col = table.partition_by[1]
        cast = "" if self.dialect == "sqlite" else "::date"
        where = f"market = {self.ph(1)} AND {date_col} = {self.ph(2)}{cast}"
        before = int(self._exec(f"SELECT count(*) FROM {table.name} WHERE {where}", (market, day.isoformat()))[0][0])
        self._exec(f"DELETE FROM {table.name} WHERE {where}", (market, day.isoformat()))
        self.append(table, df)
        return before, df.height

    def upsert_rejects(self, df: pl.DataFrame) -> None:
        self.upsert(ETL_REJECTS, df)

    def advance_watermark(self, df: pl.DataFrame) -> None:
        """Move (source_type, market) watermarks forward, never back."""
        if df.height == 0:
            return
        tmp = f"etl_tmp_wm_{next(_tmp_counter)}"
        t = ETL_WATERMARK
        self.cur.adbc_ingest(tmp, self._arrow(t, df), mode="create", temporary=True)
        src = f"temp.{tmp}" if self.dialect == "sqlite" else tmp
        cols = ", ".join(t.column_names)

        def newer(c: str) -> str:
            return (
                f"CASE WHEN {t.name}.{c} IS NULL OR excluded.{c} > {t.name}.{c} "
                f"THEN excluded.{c} ELSE {t.name}.{c} END"
            )

        self._exec(
            f"INSERT INTO {t.name} ({cols}) SELECT {cols} FROM {src} WHERE true "
            f"ON CONFLICT (source_type, market) DO UPDATE SET "
            f"last_processed_ts = {newer('last_processed_ts')}, "
            f"last_processed_file = {newer('last_processed_file')}, "
            f"run_id = excluded.run_id, updated_at = excluded.updated_at"
        )
        self._exec(f"DROP TABLE {src}")

    # -- runs -------------------------------------------------------------------------------------
    def start_run(self, run_id: str, scope: str, source: str, started_at: datetime) -> None:
        row = pl.DataFrame(
            {
                "run_id": [run_id], "started_at": [started_at], "finished_at": [None], "status": ["running"],
                "market_scope": [scope], "source": [source], "commits": [0], "lines_read": [0], "loaded": [0],
                "duplicates": [0], "rejected": [0], "held_back": [0], "summary_json": [None],
            },
            schema=ETL_RUNS.polars_schema(),
        )
        with self.transaction():
            # Runs of this scope left 'running' were killed: this run holds the scope lock now.
            self._exec(
                f"UPDATE etl_runs SET status = 'abandoned' WHERE status = 'running' AND market_scope = {self.ph(1)}",
                (scope,),
            )
            self.append(ETL_RUNS, row)

    def mark_commit(self, run_id: str, seq: int, counts: dict[str, int]) -> None:
        """Inside a commit's transaction: the record that makes the staged commit durable."""
        p = self.ph
        self._exec(
            f"UPDATE etl_runs SET commits = {p(1)}, lines_read = {p(2)}, loaded = {p(3)}, duplicates = {p(4)}, "
            f"rejected = {p(5)} WHERE run_id = {p(6)}",
            (seq, counts["lines_read"], counts["loaded"], counts["duplicates"], counts["rejected"], run_id),
        )

    def committed_seq(self, run_id: str) -> int:
        rows = self._exec(f"SELECT commits FROM etl_runs WHERE run_id = {self.ph(1)}", (run_id,))
        return int(rows[0][0]) if rows else 0

    def finish_run(self, run_id: str, status: str, counts: dict[str, int], summary_json: str) -> None:
        p = self.ph
        with self.transaction():
            self._exec(
                f"UPDATE etl_runs SET status = {p(1)}, finished_at = {p(2)}, lines_read = {p(3)}, loaded = {p(4)}, "
                f"duplicates = {p(5)}, rejected = {p(6)}, held_back = {p(7)}, summary_json = {p(8)} "
                f"WHERE run_id = {p(9)}",
                (
                    status, _ts_param(self.dialect, datetime.now(timezone.utc)), counts["lines_read"],
                    counts["loaded"], counts["duplicates"], counts["rejected"], counts["held_back"],
                    summary_json, run_id,
                ),
            )

    # -- reading back (status, tests) --------------------------------------------------------------
    def read_table(self, name: str, order_by: str | None = None) -> pl.DataFrame:
        self.cur.execute(f"SELECT * FROM {name}" + (f" ORDER BY {order_by}" if order_by else ""))
        return pl.from_arrow(self.cur.fetch_arrow_table())  # type: ignore[return-value]

    def count(self, name: str) -> int:
        return int(self._exec(f"SELECT count(*) FROM {name}")[0][0])


def _ts_param(dialect: Dialect, ts: datetime) -> str:
    if dialect == "sqlite":
        return ts.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")
    return ts.isoformat()


def _pg_uri(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1] if url.startswith("postgres://") else url


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact(text[0]) if text else type(exc).__name__
