"""Load: bulk-write staged deltas into the target database through ADBC, one transaction a commit.

New rows go in by bulk ingest (``adbc_ingest``: a multi-row INSERT on SQLite, binary COPY on
PostgreSQL); rows that replace a loaded copy go through a temporary table and ``INSERT ... ON CONFLICT
DO UPDATE`` guarded by the winner order, so replaying a delta can never let a later copy overwrite an
earlier one. The watermark and the run's commit counter are written in the same transaction as the
data.

Transactions: the connection is in autocommit mode and a commit is an explicit ``BEGIN`` ...
``COMMIT``. Both ADBC drivers run ``adbc_ingest`` on the same session without a transaction of their
own, so an ingest inside ``BEGIN`` is undone by ``ROLLBACK`` (tests/test_postgres.py checks it on both
targets), and a connection lost mid-commit leaves nothing of that commit behind.

Schema: ``ensure_schema`` creates missing tables, migrates an older table that lacks nullable columns
(``ALTER TABLE ... ADD COLUMN``), refuses one it cannot use (``TargetError``), and records
``schemas.tables.SCHEMA_VERSION`` per table in ``etl_schema``.

Secrets: a password in the URL (or its query, or PGPASSWORD) never reaches output, logs, ``etl_runs``
or an error message: every driver error is re-raised as one line, scrubbed by ``redact``.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Sequence
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import adbc_driver_manager
import polars as pl
from adbc_driver_manager import AdbcConnection, AdbcDatabase, AdbcStatement, StatementOptions

from engine.config import ConfigError
from schemas.tables import (
    ALL_TABLES,
    ETL_FLAG_LISTS,
    ETL_REJECTS,
    ETL_SCHEMA,
    ETL_WATERMARK,
    PG_INFO_TYPE,
    SCHEMA_VERSION,
    Dialect,
    Table,
    schema_version_tuple,
    sql_type,
)

if TYPE_CHECKING:
    import pyarrow as pa


def bundled_sqlite_version() -> str:
    """The version of the SQLite library ADBC's driver carries (not Python's ``sqlite3`` module's)."""
    session = _Session("sqlite", ":memory:")
    try:
        return str(session.query("SELECT sqlite_version()").item())
    finally:
        session.close()


def is_key_conflict(exc: BaseException) -> bool:
    """A unique-key violation, however the driver classifies it (SQLite's says InternalError)."""
    text = str(exc)
    return (
        getattr(exc, "sqlstate", None) == "23505"
        or "UNIQUE constraint" in text
        or "23505" in text
        or "duplicate key value violates unique constraint" in text
    )


class TargetError(ConfigError):
    """A target that cannot be used; the message is one readable sentence for the user.

    A ConfigError (an unusable ``--target``), so a caller that reports configuration errors as one
    sentence reports this one the same way wherever it is raised (connect or schema check).
    """


@dataclass(frozen=True)
class TargetURL:
    dialect: Dialect
    url: str  # as given (may hold a password: never print it)
    path: Path | None = None  # SQLite file
    conninfo: str | None = None  # PostgreSQL: the URI handed to libpq (may hold a password too)

    @property
    def redacted(self) -> str:
        return redact(self.url)


# Passwords seen in target URLs (and PGPASSWORD): ``redact`` removes them from any text, e.g. a libpq
# error that echoes a URI token ('invalid percent-encoded token: "..."').
_SECRETS: set[str] = set()
_MIN_SECRET = 3  # shorter "passwords" would blank out ordinary words; the URL forms are still redacted


def _remember_secret(secret: str | None) -> None:
    if secret:
        for form in {secret, unquote(secret), quote(unquote(secret), safe="")}:
            if len(form) >= _MIN_SECRET:
                _SECRETS.add(form)


def redact(text: str) -> str:
    """``text`` with any password replaced by ``***``, for output, logs, ``etl_runs`` and errors.

    Handles URL userinfo (``scheme://user:password@host``, also with an unencoded ``@`` in the
    password), a ``password=`` parameter (URI query or key/value conninfo), and every password a
    target URL of this process held.
    """
    text = re.sub(r"(://[^:/?#@\s]*):[^\s]*@", r"\1:***@", text)
    text = re.sub(r"(?i)(\bpassword\s*=\s*)('[^']*'|[^&\s]+)", r"\1***", text)
    if os.environ.get("PGPASSWORD"):
        _remember_secret(os.environ["PGPASSWORD"])
    for secret in sorted(_SECRETS, key=len, reverse=True):
        # Not inside a longer word: a password 'postgres' must not turn 'postgresql://' into '***ql://'.
        text = re.sub(rf"(?<![A-Za-z0-9_]){re.escape(secret)}(?![A-Za-z0-9_])", "***", text)
    return text


def redact_target(text: str) -> str:
    """A target given by the user, for its error message: ``redact``, and userinfo without a scheme
    (``//user:pw@host``, ``user:pw@host/db``, which reads as the scheme ``user``). Only for a value meant
    as a target: in other text a ``C:\\x\\kim@corp`` path or a ``09:00:01@1000`` is no password."""
    return re.sub(r"^((?://)?[^:/?#@\s]*):(?!//)[^\s]*@", r"\1:***@", redact(text.strip()))


def parse_target(url: str) -> TargetURL:
    """Validate a target URL: ``sqlite:///rel.db``, ``sqlite:////abs.db``, ``postgresql://...``."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed [IPv6] host
        raise TargetError(f"invalid target URL {redact_target(url)!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if not url.lower().startswith("sqlite:///") or parts.netloc or len(parts.path) < 2:
            raise TargetError(
                f"invalid SQLite URL {redact_target(url)!r}: use sqlite:///relative.db or sqlite:////absolute/path.db"
            )
        path = unquote(parts.path[1:])
        if parts.query or parts.fragment:  # mode=ro and the like would be dropped without a word
            raise TargetError(f"invalid SQLite URL {redact_target(url)!r}: it takes no options (?...), only a file path")
        if path == ":memory:":
            raise TargetError(f"invalid SQLite URL {redact_target(url)!r}: an in-memory database keeps nothing; name a file")
        return TargetURL("sqlite", url, Path(path))
    if scheme in ("postgresql", "postgres"):
        return _parse_pg(url, parts)
    raise TargetError(f"unsupported target {redact_target(url)!r}: use a sqlite:/// or postgresql:// URL")


def _parse_pg(url: str, parts: Any) -> TargetURL:
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    _remember_secret(password if colon else None)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "password":
            _remember_secret(value)
    usage = "use postgresql://user[:password]@host:port/database"
    if not at and "@" in parts.path:
        # 'postgresql://u:pa/ss@host/db': libpq would take 'pa' for a port and 'ss@host/db' for the database.
        raise TargetError(
            f"invalid PostgreSQL URL {redact(url)!r}: percent-encode '/', '?' and '#' in the password "
            f"(e.g. %2F), or give it in PGPASSWORD or ~/.pgpass; {usage}"
        )
    if not hostport and not parts.path.strip("/"):
        raise TargetError(f"invalid PostgreSQL URL {redact(url)!r}: {usage}")
    # A database in the path or in ?dbname=, or from what libpq reads besides: PGDATABASE, or a service.
    given = {k for k, v in parse_qsl(parts.query) if v}
    named = parts.path.strip("/") or given & {"dbname", "service"}
    if not named and not (os.environ.get("PGDATABASE") or os.environ.get("PGSERVICE")):
        # libpq would connect to the database named after the user (postgres: the maintenance database).
        raise TargetError(f"invalid PostgreSQL URL {redact(url)!r}: it names no database; {usage}")
    # libpq splits the userinfo at the first '@' and rejects bad %-escapes: hand it a canonical form.
    auth = ""
    if at:
        auth = quote(unquote(user), safe="") + (":" + quote(unquote(password), safe="") if colon else "") + "@"
    query = parts.query
    params = {k for k, _ in parse_qsl(query, keep_blank_values=True)}
    extra = [f"{k}={v}" for k, v in (("connect_timeout", "10"), ("application_name", "observer-etl")) if k not in params]
    query = "&".join(([query] if query else []) + extra)
    conninfo = f"postgresql://{auth}{hostport}{parts.path}" + (f"?{query}" if query else "")
    return TargetURL("postgresql", url, None, conninfo)


_tmp_counter = itertools.count()
PG_COPY_BATCH_ROWS = 16_384  # rows per Arrow batch handed to the PostgreSQL driver's COPY (see _ingest)
# SQLite's page cache: a load inserts at a few hot places of the key order, so 32 MiB serve it as well
# as 64 did (10M bench archive: 102.5/107.2 s against 105.7/103.8 s, peak 593/603 against 668/685 MB).
SQLITE_CACHE_KIB = 32768
# Helper threads of SQLite's sorter, set with the connection's other pragmas. Only a sort as big as an
# index build uses them: the deferred indexes built at the end of a first load (or rebuilt by
# ensure_schema), a step that left the second core idle. The event_time index of the 10M bench archive's
# 9.6M ticks takes 4.7-5.3 s with 1 against 6.7 s with none (inside a whole run: end_bulk_load 4.47
# against 6.40 s); 2 or 4 are no faster on 2 cores and add ~32 MB each, and 256 MB of page cache
# instead is slower.
SQLITE_SORT_HELPERS = 1
_SCHEMA_LOCK = 0x6F627365  # pg_advisory_xact_lock key: one schema change at a time per database
_REJECTS_LOCK = 0x6F627372  # pg_advisory_xact_lock key: one transaction at a time writes etl_rejects


@dataclass(frozen=True)
class _Col:
    type: str  # declared type (SQLite) or information_schema data_type (PostgreSQL)
    not_null: bool
    has_default: bool


@dataclass(frozen=True)
class _Found:
    """One existing table as the database has it."""

    columns: dict[str, _Col]
    primary_key: list[str]
    indexes: set[str]


class _Session:
    """One ADBC connection through the driver manager's own API rather than its DB-API.

    The DB-API imports pyarrow with its dataset and compute modules (~0.2 s of every run's start, a run
    with nothing new included); here results come back as Polars frames over the Arrow C stream
    interface, and pyarrow is only imported by the wire form of rows that are really loaded. The same
    driver calls as the DB-API's ``execute`` and ``adbc_ingest``: the connection is in autocommit mode
    (ADBC's default).

    Driver calls are made directly, not through the DB-API's ``_blocking_call``: while a call runs, that
    wrapper swaps Python's SIGINT handler for one that cancels the statement from a helper thread, and
    when the call ends before the helper runs (every short statement) the interrupt is consumed and lost
    (adbc_driver_manager 1.13, ``_blocking_impl.cc``; a Ctrl-C 0.7 s into a run let it finish). Python's
    own handler never loses one: Ctrl-C takes effect when the call returns (at most a unit's load), and
    SQLite's driver cannot cancel a statement anyway.
    """

    def __init__(self, dialect: Dialect, uri: str) -> None:
        if dialect == "sqlite":
            import adbc_driver_sqlite as driver
        else:
            import adbc_driver_postgresql as driver  # type: ignore[no-redef]
        self.rowcount = -1  # rows the last statement affected, where the driver says (-1: it does not)
        self.db: AdbcDatabase = driver.connect(uri)
        try:
            self.conn = AdbcConnection(self.db)
        except BaseException:
            self.db.close()
            raise

    def query(self, sql: str, params: tuple[Any, ...] | None = None) -> pl.DataFrame:
        """Run one statement (parameters bound by position); its result set, empty for statements without."""
        stmt = AdbcStatement(self.conn)
        try:
            stmt.set_sql_query(sql)
            if params:
                stmt.bind_stream(_bind_row(params).__arrow_c_stream__())
            stream, self.rowcount = stmt.execute_query()
            return pl.DataFrame(stream)
        finally:
            stmt.close()

    def ingest(self, name: str, data: Any, *, mode: str, temporary: bool) -> None:
        """Bulk-ingest Arrow ``data`` (anything with ``__arrow_c_stream__``) into table ``name``."""
        stmt = AdbcStatement(self.conn)
        try:
            stmt.set_options(
                **{
                    adbc_driver_manager.INGEST_OPTION_TARGET_TABLE: name,
                    adbc_driver_manager.INGEST_OPTION_MODE: _INGEST_MODE[mode],
                    StatementOptions.INGEST_TEMPORARY.value: "true" if temporary else "false",
                }
            )
            stmt.bind_stream(data.__arrow_c_stream__())
            stmt.execute_update()
        finally:
            stmt.close()

    def close(self) -> None:
        """Close quietly: the connection may be gone, and its errors no longer matter."""
        for handle in (self.conn, self.db):
            try:
                handle.close()
            except Exception:  # noqa: BLE001
                pass


_INGEST_MODE = {"append": adbc_driver_manager.INGEST_OPTION_MODE_APPEND, "create": adbc_driver_manager.INGEST_OPTION_MODE_CREATE}


def _listed(names: list[str]) -> str:
    """Table names as an SQL list of literals: our own names, never user input."""
    return ", ".join(f"'{n}'" for n in names)


def _bind_row(params: tuple[Any, ...]) -> pl.DataFrame:
    """One row of bind parameters. Polars exports an all-null column with a buffer the drivers refuse,
    so a ``None`` goes as a null of text."""
    return pl.DataFrame(
        [pl.Series(str(i), [v], dtype=pl.String if v is None else None) for i, v in enumerate(params)]
    )


class Target:
    """One open connection to the target database, in autocommit mode with explicit transactions."""

    def __init__(self, target: TargetURL, busy_timeout_ms: int = 120_000, *, read_only: bool = False) -> None:
        """``read_only`` (``observer status``): nothing is created or changed, an SQLite file included:
        one that does not exist is a TargetError, and the file keeps its journal mode."""
        self.target = target
        self.dialect: Dialect = target.dialect
        self._checkpointer: _Checkpointer | None = None
        self._rollback_journal = False
        try:
            if self.dialect == "sqlite":
                assert target.path is not None
                if target.path.parent and not target.path.parent.exists():
                    raise TargetError(f"cannot open {target.redacted}: directory {target.path.parent} does not exist")
                if target.path.is_dir():  # the driver would only say "OperationalError"
                    raise TargetError(f"cannot open {target.redacted}: {target.path} is a directory, not a database file")
                if read_only and not target.path.exists():
                    raise TargetError(f"cannot open {target.redacted}: {target.path} does not exist")
                # An SQLite URI opens the file read-only; the path is percent-encoded for it ('?', '#', '%').
                uri = f"file:{quote(str(target.path.absolute()))}?mode=ro" if read_only else str(target.path)
                self.session = _Session("sqlite", uri)
                # Writers beside this one (a parallel per-market run) wait their turn for up to the busy timeout.
                self._exec(f"PRAGMA busy_timeout={busy_timeout_ms}")
                self._exec(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
                self._exec(f"PRAGMA threads={SQLITE_SORT_HELPERS}")
                self._busy_timeout_ms = busy_timeout_ms
                if not read_only:
                    self._journal("wal")
            else:
                assert target.conninfo is not None  # parse_target always sets it for PostgreSQL
                self.session = _Session("postgresql", target.conninfo)
                if read_only:
                    self._exec("SET default_transaction_read_only = on")
        except TargetError:
            raise
        except Exception as exc:  # noqa: BLE001 - driver errors become one sentence
            why = _message(exc)
            if read_only and target.path is not None:  # a reader's open reads the schema: a lock, a hot journal
                raise TargetError(f"cannot read {target.redacted}: {sqlite_reader_why(why, target.path)}") from None
            if self.dialect == "sqlite" and why == type(exc).__name__ and target.path is not None:
                # The SQLite driver says only "OperationalError" when it cannot open or create the file.
                raise TargetError(
                    f"cannot open {target.redacted}: SQLite cannot open or create {target.path} "
                    f"(is {target.path.parent} writable, and is the file a database?)"
                ) from None
            raise TargetError(f"cannot connect to {target.redacted}: {why}") from None

    # -- plumbing ---------------------------------------------------------------------------------
    @contextmanager
    def _driver(self) -> Iterator[None]:
        """Re-raise a driver error as the same class with a one-line, password-free message."""
        try:
            yield
        except adbc_driver_manager.Error as exc:
            raise _readable(exc, self.dialect) from None

    def _exec(self, sql: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        with self._driver():
            return self.session.query(sql, params).rows()

    def _ingest(
        self, name: str, table: Table, df: pl.DataFrame, columns: list[str] | None = None, *, mode: str,
        temporary: bool = False,
    ) -> None:
        """Bulk-ingest ``df`` (``table``'s columns, or ``columns``) into ``name`` in its wire form."""
        data: pa.Table | pa.RecordBatchReader
        interrupted: list[bool] = []
        if self.dialect == "postgresql" and df.height > PG_COPY_BATCH_ROWS:
            # The PostgreSQL driver encodes each batch it is given whole into one COPY buffer before it
            # sends it, so a unit-sized batch is another copy of the unit; slices are made Arrow (and
            # NUL-free) one at a time as the driver reads them. Still one COPY (1M bench archive: peak
            # 714-773 MB as one batch, 581-601 MB in batches of 16,384 rows, as fast).
            n = PG_COPY_BATCH_ROWS

            def batches() -> Iterator[pa.RecordBatch]:
                # The driver calls this generator: an interrupt raised in it would come back as a driver
                # error with a Python traceback in its text. The stream ends instead, and it is raised
                # below, before the transaction can commit the rows sent so far.
                try:
                    for o in range(0, df.height, n):
                        yield from self._arrow(table, df.slice(o, n), columns).to_batches()
                except KeyboardInterrupt:
                    interrupted.append(True)

            import pyarrow as pa  # only where rows are loaded (see _Session)

            data = pa.RecordBatchReader.from_batches(table.arrow_schema(columns), batches())
        else:
            data = self._arrow(table, df, columns)
        with self._driver():
            self.session.ingest(name, data, mode=mode, temporary=temporary)
        if interrupted:
            raise KeyboardInterrupt

    def ph(self, i: int) -> str:
        """The i-th (1-based) bind placeholder."""
        return "?" if self.dialect == "sqlite" else f"${i}"

    def _cast(self, logical: str) -> str:
        """The cast a text bind parameter needs to compare with or be stored in a column of that type."""
        if self.dialect == "sqlite":
            return ""
        return {"date": "::date", "timestamp": "::timestamptz"}.get(logical, "")

    def _bytewise(self, expr: str, table: Table, col: str) -> str:
        """``expr`` ordered byte by byte, as Polars (and SQLite) order strings, whatever the server locale."""
        is_text = next(c.type for c in table.columns if c.name == col) == "text"
        return f'{expr} COLLATE "C"' if is_text and self.dialect == "postgresql" else expr

    @contextmanager
    def _temp_table(self, table: Table, df: pl.DataFrame, columns: list[str] | None = None) -> Iterator[str]:
        """``df`` (of ``table``'s columns) in a temporary table for set-based SQL; its name, dropped after."""
        tmp = f"etl_tmp_{table.name}_{next(_tmp_counter)}"
        self._ingest(tmp, table, df, columns, mode="create", temporary=True)
        src = f"temp.{tmp}" if self.dialect == "sqlite" else tmp
        yield src
        self._exec(f"DROP TABLE {src}")

    def close(self) -> None:
        if self._rollback_journal:  # a failed first load: leave the file as every other run leaves it
            try:
                self._journal("wal", checkpointer=False)
            except Exception:  # noqa: BLE001 - the next run's connect switches it back to WAL anyway
                pass
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.session.close()

    @property
    def rollback_journal(self) -> bool:
        """SQLite: the file is in a rollback-journal mode (a first load's), not WAL."""
        return self._rollback_journal

    def _journal(self, mode: Literal["wal", "delete"], *, checkpointer: bool = True) -> str:
        """SQLite: switch the journal mode; the mode the file is in afterwards.

        WAL (every run's mode): readers never wait for a load, COMMIT only appends to the WAL, and the
        checkpointer thread copies the pages into the file. A first load into empty tables uses a rollback
        journal instead (``begin_bulk_load``): pages appended to the file are not journaled at all, so
        each page is written once instead of twice (WAL, then checkpoint), with ``synchronous=FULL`` for
        the same durability. Switching needs the only connection to the file: where another one is open
        (a run beside this one, a reader), the file stays as it is, and the next connect or close of a
        run tries again. Either mode is crash-safe; only readers and speed differ. ``checkpointer=False``
        (at close): no checkpointer thread for a connection about to go.
        """
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        # Never wait for the other connections to go: they may be open for a whole run. SQLite refuses a
        # switch they stand in the way of ('database is locked'); the file then stays as it is.
        self._exec("PRAGMA busy_timeout=0")
        try:
            got: str | None = str(self._exec(f"PRAGMA journal_mode={mode}")[0][0]).lower()
        except adbc_driver_manager.Error:
            got = None
        finally:
            self._exec(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        if got is None:
            got = str(self._exec("PRAGMA journal_mode")[0][0]).lower()
        self._rollback_journal = got != "wal"
        if got == "wal":
            self._exec("PRAGMA synchronous=NORMAL")  # durable in WAL mode; a power cut may lose the last commit
            if checkpointer:
                self._checkpointer = _Checkpointer.start(str(self.target.path), self._busy_timeout_ms)
        else:
            self._exec("PRAGMA synchronous=FULL")
        # Without the checkpointer thread (or if another run turns the file back to WAL), SQLite's own.
        self._exec(f"PRAGMA wal_autocheckpoint={0 if self._checkpointer is not None else 1000}")
        return got

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._exec("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
        try:
            yield
            self._exec("COMMIT")
            if self._checkpointer is not None:
                self._checkpointer.poke()
        except BaseException:
            try:
                self.session.query("ROLLBACK")
            except Exception:  # noqa: BLE001 - the connection may be gone; the server rolls back
                pass
            raise

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read-only transaction: every query in it sees the database as one commit left it (a run
        committing meanwhile shows in none of them). SQLite's deferred BEGIN takes no write lock."""
        self._exec("BEGIN" if self.dialect == "sqlite" else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield
        finally:
            try:
                self.session.query("ROLLBACK")
            except Exception:  # noqa: BLE001 - the connection may be gone; nothing was written
                pass

    # -- schema -----------------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create missing tables, migrate older ones, refuse incompatible ones; record the version."""
        with self.transaction():
            self._lock_schema()
            found = self.catalog([t.name for t in (ETL_SCHEMA, *ALL_TABLES)])
            self._ensure_table(ETL_SCHEMA, found.get(ETL_SCHEMA.name))
            recorded = {str(n): str(v) for n, v in self._exec("SELECT table_name, schema_version FROM etl_schema")}
            ours = schema_version_tuple(SCHEMA_VERSION)
            for table in ALL_TABLES:
                version = recorded.get(table.name)
                if version is not None:
                    try:
                        newer = schema_version_tuple(version) > ours
                    except ValueError:
                        newer = True
                    if newer:
                        raise TargetError(
                            f"table {table.name} has schema version {version!r} (etl_schema), newer than this "
                            f"observer-etl's {SCHEMA_VERSION}: upgrade observer-etl"
                        )
                self._ensure_table(table, found.get(table.name))
                if version != SCHEMA_VERSION:
                    self._record_version(table.name)

    def _ensure_table(self, table: Table, found: _Found | None) -> None:
        if found is None:
            self._exec(table.create_ddl(self.dialect))
        else:
            self._check_and_migrate(table, found)
        existing = found.indexes if found is not None else set()
        for idx in table.indexes:
            if table.index_name(idx) not in existing:
                self._exec(table.index_ddl(idx))

    def _lock_schema(self) -> None:
        """PostgreSQL: one transaction at a time that creates or drops tables and indexes, until it ends.

        Parallel per-market runs start and end together: ``CREATE ... IF NOT EXISTS`` of the same table
        or index in two sessions at once fails with a duplicate key in pg_class. SQLite's write lock
        already serializes them."""
        if self.dialect == "postgresql":
            self._exec(f"SELECT 1 FROM pg_advisory_xact_lock({_SCHEMA_LOCK})")

    def begin_bulk_load(self, tables: tuple[Table, ...]) -> list[Table]:
        """Prepare a run's loads into ``tables``; what a first load into empty tables can skip.

        The secondary indexes of empty tables are dropped: the run builds each once at the end, sorted,
        instead of maintaining it row by row (``end_bulk_load``, or the next ``ensure_schema``, restores
        them). On SQLite, when every one of ``tables`` is empty, the run writes through a rollback
        journal instead of the WAL (``_journal``): about a fifth less CPU for a large first load.
        Returns the tables whose indexes were deferred.
        """
        with self.transaction():
            self._lock_schema()
            empty = [t for t in tables if not self._exec(f"SELECT 1 FROM {t.name} LIMIT 1")]
            for t in empty:
                for idx in t.indexes:
                    self._exec(f"DROP INDEX IF EXISTS {t.index_name(idx)}")
        if self.dialect == "sqlite" and len(empty) == len(tables):
            self._journal("delete")
        return [t for t in empty if t.indexes]

    def end_bulk_load(self, deferred: list[Table]) -> None:
        """Build the deferred indexes, and return the file to WAL mode."""
        with self.transaction():
            self._lock_schema()
            for t in deferred:
                for idx in t.indexes:
                    self._exec(t.index_ddl(idx))
        if self._rollback_journal:
            self._journal("wal")

    def _record_version(self, name: str) -> None:
        p, now = self.ph, _ts_param(self.dialect, datetime.now(timezone.utc))
        self._exec(
            f"INSERT INTO etl_schema (table_name, schema_version, updated_at) "
            f"VALUES ({p(1)}, {p(2)}, {p(3)}{self._cast('timestamp')}) ON CONFLICT (table_name) DO UPDATE SET "
            f"schema_version = excluded.schema_version, updated_at = excluded.updated_at",
            (name, SCHEMA_VERSION, now),
        )

    def catalog(self, names: list[str]) -> dict[str, _Found]:
        """What the database has of each table in ``names`` that exists: columns, primary key, indexes.

        On PostgreSQL three catalog queries for all the tables, not three per table: a run with nothing
        new is mostly its schema check.
        """
        found: dict[str, _Found] = {}
        if self.dialect == "sqlite":
            for name in names:
                rows = self._exec(f"PRAGMA main.table_info({name})")
                if rows:
                    cols = {str(r[1]).lower(): _Col(str(r[2] or ""), bool(r[3]), r[4] is not None) for r in rows}
                    pk = [str(r[1]).lower() for r in sorted((r for r in rows if r[5]), key=lambda r: r[5])]
                    indexes = {str(r[1]) for r in self._exec(f"PRAGMA main.index_list({name})")}
                    found[name] = _Found(cols, pk, indexes)
            return found
        listed = _listed(names)
        for name, col, type_, nullable, default in self._exec(
            "SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns "
            f"WHERE table_schema = current_schema() AND table_name IN ({listed}) ORDER BY table_name, ordinal_position"
        ):
            found.setdefault(str(name), _Found({}, [], set())).columns[str(col)] = _Col(
                str(type_), nullable == "NO", default is not None
            )
        for name, col in self._exec(
            "SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints tc "
            "JOIN information_schema.key_column_usage kcu ON kcu.constraint_schema = tc.constraint_schema "
            "AND kcu.constraint_name = tc.constraint_name AND kcu.table_name = tc.table_name "
            "WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = current_schema() "
            f"AND tc.table_name IN ({listed}) ORDER BY tc.table_name, kcu.ordinal_position"
        ):
            if str(name) in found:
                found[str(name)].primary_key.append(str(col))
        for name, index in self._exec(
            f"SELECT tablename, indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename IN ({listed})"
        ):
            if str(name) in found:
                found[str(name)].indexes.add(str(index))
        return found

    def existing(self, names: list[str]) -> set[str]:
        """Which of the tables ``names`` exist, whether or not this session may read them (PostgreSQL's
        information_schema, which ``catalog`` reads, leaves out what the role has no rights on)."""
        if self.dialect == "sqlite":
            return set(self.catalog(names))
        return {
            str(r[0])
            for r in self._exec(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace "
                f"WHERE ns.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname IN ({_listed(names)})"
            )
        }

    def _same_type(self, logical: str, found: str) -> bool:
        if self.dialect == "postgresql":
            return found == PG_INFO_TYPE[logical]  # type: ignore[index]
        return _sqlite_affinity(found) == _sqlite_affinity(sql_type("sqlite", logical))  # type: ignore[arg-type]

    def _check_and_migrate(self, table: Table, found: _Found) -> None:
        """Add missing nullable columns; raise TargetError for what a migration cannot fix."""
        where = f"in {self.target.redacted}"
        cols, pk = found.columns, found.primary_key
        if sorted(pk) != sorted(table.key):
            have_pk = f"({', '.join(pk)})" if pk else "none"
            raise TargetError(
                f"table {table.name} {where} has primary key {have_pk}, but observer-etl needs "
                f"({', '.join(table.key)}): it cannot be migrated, drop or rename it"
            )
        missing = []
        for c in table.columns:
            have = cols.get(c.name)
            if have is None:
                if not c.nullable or c.name in table.key:
                    raise TargetError(
                        f"table {table.name} {where} lacks the required column {c.name} "
                        f"({sql_type(self.dialect, c.type)} NOT NULL), which cannot be added to existing rows"
                    )
                missing.append(c.name)
            elif not self._same_type(c.type, have.type):
                raise TargetError(
                    f"column {table.name}.{c.name} {where} has type {have.type.upper() or 'none'}, but observer-etl "
                    f"needs {sql_type(self.dialect, c.type)}: the table cannot be migrated, drop or rename it"
                )
            elif have.not_null and c.nullable and c.name not in table.key:  # a default does not stop a NULL
                raise TargetError(
                    f"column {table.name}.{c.name} {where} is NOT NULL, but observer-etl writes NULL into it: "
                    f"drop the constraint (ALTER TABLE {table.name} ALTER COLUMN {c.name} DROP NOT NULL)"
                )
        ours = set(table.column_names)
        for name, have in cols.items():
            if name not in ours and have.not_null and not have.has_default:
                raise TargetError(
                    f"column {table.name}.{name} {where} is NOT NULL without a default, and observer-etl does "
                    f"not write it: give it a default or drop the constraint"
                )
        for name in missing:
            self._exec(f"ALTER TABLE {table.name} ADD COLUMN {table.column_ddl(self.dialect, name)}")

    # -- data -------------------------------------------------------------------------------------
    def _arrow(self, table: Table, df: pl.DataFrame, columns: list[str] | None = None) -> pa.Table:
        df = df.select(columns if columns is not None else table.column_names)
        if self.dialect == "postgresql":
            # PostgreSQL text cannot hold NUL (0x00): keep the rest of the value, e.g. a reject's raw line.
            text = [c.name for c in table.columns if c.type == "text" and c.name in df.columns]
            has_nul = df.select(pl.col(text).str.contains("\x00", literal=True).any()).row(0) if df.height else ()
            nul = [name for name, hit in zip(text, has_nul) if hit]
            if nul:
                df = df.with_columns(pl.col(nul).str.replace_all("\x00", "\ufffd", literal=True))
        return table.wire_table(df, self.dialect, columns)

    def append(self, table: Table, df: pl.DataFrame) -> int:
        """Bulk-ingest rows known to be new (raises on a key conflict)."""
        if df.height == 0:
            return 0
        self._ingest(table.name, table, df, mode="append")
        return df.height

    def delete_keys(self, table: Table, keys: pl.DataFrame) -> int:
        """Delete rows by primary key (a tick whose winning copy moved its key)."""
        if keys.height == 0:
            return 0
        with self._temp_table(table, keys, list(table.key)) as src:
            on = " AND ".join(f"{self._bytewise(f's.{k}', table, k)} = {table.name}.{k}" for k in table.key)
            self._exec(f"DELETE FROM {table.name} WHERE EXISTS (SELECT 1 FROM {src} s WHERE {on})")
            return self._changes()

    def upsert(self, table: Table, df: pl.DataFrame) -> tuple[int, int]:
        """Insert or replace rows by key: (inserted, updated).

        A row replaces the loaded one only if it wins the key (smaller winner order), or if it is the
        same copy with a changed value (a recomputed tick_volume); replaying a delta changes nothing.
        The rows must have distinct keys (PostgreSQL refuses to update one row twice in a statement).
        """
        if df.height == 0:
            return 0, 0
        with self._temp_table(table, df) as src:
            return self._upsert_from(table, src, df.height)

    def _upsert_from(self, table: Table, src: str, n: int) -> tuple[int, int]:
        """upsert of the ``n`` rows staged in temporary table ``src``."""
        on = " AND ".join(f"{self._bytewise(f's.{k}', table, k)} = t.{k}" for k in table.key)
        existing = int(self._exec(f"SELECT count(*) FROM {src} s JOIN {table.name} t ON {on}")[0][0])
        cols = ", ".join(table.column_names)
        sets = ", ".join(f"{c} = excluded.{c}" for c in table.value_columns)
        compared = [c for c in table.value_columns if c not in ("etl_timestamp", "schema_version", "run_id")]
        differs = " OR ".join(f"excluded.{c} IS DISTINCT FROM {table.name}.{c}" for c in compared)
        guard = f" WHERE {differs}"
        if table.winner_order:
            new = ", ".join(self._bytewise(f"excluded.{c}", table, c) for c in table.winner_order)
            old = ", ".join(self._bytewise(f"{table.name}.{c}", table, c) for c in table.winner_order)
            guard = f" WHERE ({new}) < ({old}) OR (({new}) = ({old}) AND ({differs}))"
        self._exec(
            f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {src} WHERE true "
            f"ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {sets}{guard}"
        )
        changed = self._changes()
        inserted = n - existing
        return inserted, changed - inserted

    def _changes(self) -> int:
        """Rows the last INSERT/UPDATE/DELETE affected (without bind parameters on PostgreSQL)."""
        if self.dialect == "sqlite":
            return int(self._exec("SELECT changes()")[0][0])
        return int(self.session.rowcount)

    def replace_partition(self, table: Table, market: str, day: date, df: pl.DataFrame) -> tuple[int, int]:
        """Replace one (market, date) of a table wholesale: (rows before, rows after)."""
        date_col = table.partition_by[1]
        where = f"market = {self.ph(1)} AND {date_col} = {self.ph(2)}{self._cast('date')}"
        before = int(self._exec(f"SELECT count(*) FROM {table.name} WHERE {where}", (market, day.isoformat()))[0][0])
        self._exec(f"DELETE FROM {table.name} WHERE {where}", (market, day.isoformat()))
        self.append(table, df)
        return before, df.height

    def _lock_rejects(self) -> None:
        """Take etl_rejects for the rest of the transaction (PostgreSQL; SQLite has one writer anyway).

        Rejects carry no market, so parallel per-market runs delete and upsert the same reject rows, each
        in its own order: two commits doing so at once deadlocked (one run's ``forget_rejects`` of a
        grown file's line against another's upsert of it; 7 of 36 runs of six markets on a growing
        archive). Held until COMMIT, so these commits' tails take turns; their data loads do not.
        """
        if self.dialect == "postgresql":
            self._exec(f"SELECT 1 FROM pg_advisory_xact_lock({_REJECTS_LOCK})")

    def forget_rejects(self, source_file: str, from_line: int = 0) -> None:
        """Delete a file's rejects from a line on: it is read again from there (0: from the start, a
        rewritten file or a changed document; else a last line read again once the file has grown)."""
        self._lock_rejects()
        self._exec(
            f"DELETE FROM {ETL_REJECTS.name} WHERE source_file = {self.ph(1)} AND line_number >= {self.ph(2)}",
            (source_file, from_line),
        )

    def write_rejects(self, df: pl.DataFrame, known_new: bool) -> None:
        """Rejects of lines read for the first time are appended; a re-read file's replace the old ones."""
        if df.height == 0:
            return
        self._lock_rejects()
        if known_new:
            self.append(ETL_REJECTS, df)
        else:
            self.upsert(ETL_REJECTS, df)

    def advance_watermark(self, df: pl.DataFrame) -> None:
        """Move (source_type, market) watermarks forward, never back. ``run_id`` and ``updated_at`` name
        the run that last moved a mark: a run that only read older lines (a late file) leaves them."""
        if df.height == 0:
            return
        t = ETL_WATERMARK
        cols = ", ".join(t.column_names)

        def moves(c: str) -> str:
            new, old = self._bytewise(f"excluded.{c}", t, c), self._bytewise(f"{t.name}.{c}", t, c)
            return f"(excluded.{c} IS NOT NULL AND ({t.name}.{c} IS NULL OR {new} > {old}))"

        def newer(c: str, *cond: str) -> str:
            return f"CASE WHEN {' OR '.join(moves(m) for m in cond or (c,))} THEN excluded.{c} ELSE {t.name}.{c} END"

        marks = ("last_processed_ts", "last_processed_file")
        with self._temp_table(t, df) as src:
            self._exec(
                f"INSERT INTO {t.name} ({cols}) SELECT {cols} FROM {src} WHERE true "
                f"ON CONFLICT (source_type, market) DO UPDATE SET "
                + ", ".join(f"{c} = {newer(c)}" for c in marks) + ", "
                + ", ".join(f"{c} = {newer(c, *marks)}" for c in ("run_id", "updated_at"))
            )

    # -- runs -------------------------------------------------------------------------------------
    def start_run(self, run_id: str, scope: str, source: str, started_at: datetime) -> None:
        """Record the run as 'running' (a row of bind parameters: a run with nothing new loads nothing)."""
        p = self.ph
        with self.transaction():
            # Runs of this scope left 'running' were killed: this run holds the scope lock now.
            self._exec(
                f"UPDATE etl_runs SET status = 'abandoned' WHERE status = 'running' AND market_scope = {p(1)}",
                (scope,),
            )
            self._exec(
                "INSERT INTO etl_runs (run_id, started_at, status, market_scope, source, commits, lines_read, loaded, "
                f"duplicates, rejected, held_back) VALUES ({p(1)}, {p(2)}{self._cast('timestamp')}, 'running', "
                f"{p(3)}, {p(4)}, 0, 0, 0, 0, 0, 0)",
                (run_id, _ts_param(self.dialect, started_at), scope, redact(source)),
            )

    def flag_lists(self) -> dict[str, frozenset[date]]:
        """The holiday list each market's rows were flagged with (``ETL_FLAG_LISTS``: ISO dates, comma-separated)."""
        return {
            str(m): frozenset(date.fromisoformat(d) for d in str(h).split(",") if d)
            for m, h in self._exec(f"SELECT market, holidays FROM {ETL_FLAG_LISTS.name}")
        }

    def record_flag_lists(self, markets: Sequence[str], holidays: frozenset[date], run_id: str, at: datetime) -> None:
        """Inside a commit's transaction: ``markets``' rows now carry the flags of ``holidays``."""
        p, t, listed = self.ph, ETL_FLAG_LISTS.name, ",".join(sorted(d.isoformat() for d in holidays))
        for m in markets:
            self._exec(
                f"INSERT INTO {t} (market, holidays, run_id, updated_at) VALUES ({p(1)}, {p(2)}, {p(3)}, "
                f"{p(4)}{self._cast('timestamp')}) ON CONFLICT (market) DO UPDATE SET holidays = excluded.holidays, "
                "run_id = excluded.run_id, updated_at = excluded.updated_at",
                (m, listed, run_id, _ts_param(self.dialect, at)),
            )

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
                f"UPDATE etl_runs SET status = {p(1)}, finished_at = {p(2)}{self._cast('timestamp')}, "
                f"lines_read = {p(3)}, loaded = {p(4)}, duplicates = {p(5)}, rejected = {p(6)}, held_back = {p(7)}, "
                f"summary_json = {p(8)} WHERE run_id = {p(9)}",
                (
                    status, _ts_param(self.dialect, datetime.now(timezone.utc)), counts["lines_read"],
                    counts["loaded"], counts["duplicates"], counts["rejected"], counts["held_back"],
                    redact(summary_json), run_id,
                ),
            )

    # -- reading back (status, tests) --------------------------------------------------------------
    def read_table(self, name: str, order_by: str | None = None) -> pl.DataFrame:
        with self._driver():
            return self.session.query(f"SELECT * FROM {name}" + (f" ORDER BY {order_by}" if order_by else ""))

    def count(self, name: str) -> int:
        return int(self._exec(f"SELECT count(*) FROM {name}")[0][0])

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of a query of our own (no user input in ``sql``)."""
        return self._exec(sql)


class _Checkpointer:
    """Copies committed WAL pages into an SQLite database file on a thread and connection of its own.

    With SQLite's automatic checkpoint, the COMMIT that pushes the WAL past its limit also copies every
    page the unit wrote into the database file (and fsyncs it), on the loading thread. Here COMMIT only
    appends to the WAL; a PASSIVE checkpoint, which never blocks the writer, runs beside the next unit's
    work. Checkpoints are always safe to interrupt: a kill -9 leaves a WAL that the next open replays.
    """

    def __init__(self, session: _Session) -> None:
        self.session = session
        self.wake, self.stopping = threading.Event(), False
        self.thread = threading.Thread(target=self._loop, name="wal-checkpoint", daemon=True)
        self.thread.start()

    @classmethod
    def start(cls, path: str, busy_timeout_ms: int) -> _Checkpointer | None:
        session = None
        try:
            session = _Session("sqlite", path)
            session.query(f"PRAGMA busy_timeout={busy_timeout_ms}")
        except Exception:  # noqa: BLE001 - without it, SQLite's own auto-checkpoint stays on
            if session is not None:
                session.close()
            return None
        return cls(session)

    def _loop(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.stopping:
                return
            try:
                self.session.query("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception:  # noqa: BLE001 - a skipped checkpoint only leaves a longer WAL for the next
                pass

    def poke(self) -> None:
        self.wake.set()

    def close(self) -> None:
        self.stopping = True
        self.wake.set()
        self.thread.join()
        self.session.close()


def _sqlite_affinity(declared: str) -> str:
    """SQLite's type affinity of a declared column type (https://sqlite.org/datatype3.html, 3.1)."""
    t = declared.upper()
    if "INT" in t:
        return "INTEGER"
    if any(s in t for s in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if not t or "BLOB" in t:
        return "BLOB"
    if any(s in t for s in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def _ts_param(dialect: Dialect, ts: datetime) -> str:
    """A timestamp bind parameter: naive UTC ISO text on SQLite, ISO with offset (cast) on PostgreSQL."""
    if dialect == "sqlite":
        return ts.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")
    return ts.isoformat()


# Driver/libpq wrapping around the message proper, e.g. 'IO: [libpq] Failed to execute COPY statement:
# PGRES_FATAL_ERROR ERROR:  duplicate key ...' or 'INTERNAL: failed to execute: UNIQUE constraint failed'.
_NOISE = re.compile(
    r"^(?:[A-Z_]+: |\[libpq\] ?|\[SQLite\] ?|[Ff]ailed to [^:]*(?::|$) ?|could not begin COPY: |PGRES_[A-Z_]+ |"
    r"(?:ERROR|FATAL|PANIC):\s+)"
)
_QUOTED_STATEMENT = re.compile(r"([Ff]ailed to (?:execute|prepare) (?:query|statement)) '.*?'(?=: )", re.DOTALL)
_CONNECTION_LOST = re.compile(
    r"terminating connection|server closed the connection|no connection to the server|connection to server was lost|"
    r"could not receive data from server|could not send data to server|SSL SYSCALL error|unexpected EOF",
    re.IGNORECASE,
)


def _message(exc: BaseException) -> str:
    """A driver error as one readable line: the server's or library's own words, without the plumbing."""
    # libpq quotes the failed statement, line breaks and all, before the server's message.
    text = _QUOTED_STATEMENT.sub(r"\1", str(exc), count=1)
    for line in text.splitlines():
        line = line.strip()
        if not line or re.match(r"(?i)^(query was|detail|context|hint):", line):
            continue
        while (stripped := _NOISE.sub("", line, count=1)) != line:
            line = stripped.strip()
        line = re.sub(r"\b(?:ERROR|FATAL|PANIC):\s+", "", line)  # libpq's severity inside the line
        line = re.sub(r"\.? ?SQLSTATE: [0-9A-Z]{5}$", "", line).strip()
        if line:
            return redact(line)
    return type(exc).__name__


def _readable(exc: adbc_driver_manager.Error, dialect: Dialect) -> adbc_driver_manager.Error:
    msg = _message(exc)
    if dialect == "postgresql" and _CONNECTION_LOST.search(str(exc)):
        msg = f"lost the connection to the PostgreSQL server ({msg})"
    try:
        new = type(exc)(
            msg, status_code=exc.status_code, vendor_code=exc.vendor_code, sqlstate=exc.sqlstate, details=exc.details
        )
    except Exception:  # noqa: BLE001 - keep the original if its class cannot be rebuilt
        return exc
    return new


def sqlite_reader_why(why: str, path: Path) -> str:
    """What SQLite says when a read-only connection cannot read ``path``, as what to do about it."""
    if "database is locked" in why:
        return "it is locked by a load in progress (a first load into empty tables keeps readers out while it commits): try again"
    if "readonly database" in why:  # a reader that would have to write: a hot journal, or the WAL's index
        journal = path.with_name(path.name + "-journal")
        if journal.exists() and journal.stat().st_size:
            return f"a killed load left {journal.name} beside it, which only a writer can roll back: the next observer etl run does"
        return (
            f"it is in WAL mode, and a reader must create {path.name}-shm beside it: {path.parent} must be writable "
            "for this user (or read it as the user that loads)"
        )
    return why


def error_line(exc: BaseException) -> str:
    """Any error as the one readable, redacted line a user is shown."""
    return _message(exc)
