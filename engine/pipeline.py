"""The run: extract (scan) -> normalize -> dedup -> stage -> load, one commit per (kind, file date),
and one for a run's changed universe documents.

Every JSONL line read ends as exactly one of loaded, duplicate or rejected (``lines_read`` is their
sum); an incomplete last line of a growing file is held back and read again next time. Each commit is
atomic across the staged Parquet, the manifest and the database (see ``engine.watermark``).
"""

from __future__ import annotations

import dataclasses
import fcntl
import itertools
import json
import os
import secrets
import shutil
import time
from collections import Counter, defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Protocol, Sequence, TypeVar

import adbc_driver_manager
import polars as pl

from engine import dedup, normalize, scan
from engine.config import ConfigError, RunOptions, load_holidays, load_security_master
from engine.load import Target, TargetError, error_line, is_key_conflict, parse_target
from engine.watermark import reconcile, watermark_rows
from schemas.records import Kind
from schemas.tables import DATA_TABLES, ETL_REJECTS, ETL_WATERMARK, MARKET_UNIVERSE, SCALP_TICKS, SWING_SNAPSHOTS, Table
from staging import manifest
from staging.layout import (
    StagingError, market_dir, markets, missing_dirs, part_files, part_name, partition_dir, partitions, read_parts,
    remove_if_empty, remove_stray_temporaries, spill_dir, unwritable, write_part,
)

TABLE_OF: dict[Kind, Table] = {Kind.SCALP: SCALP_TICKS, Kind.SWING: SWING_SNAPSHOTS}
TIME_COL: dict[Kind, str] = {Kind.SCALP: "recv_time", Kind.SWING: "snap_time"}
T = TypeVar("T")


class EtlError(Exception):
    """A run that cannot start or go on; the message is one readable sentence."""


class Progress(Protocol):
    def plan(self, files: int, total_bytes: int) -> None: ...
    def advance(self, files: int, nbytes: int, lines: int, rows: int) -> None: ...
    def note(self, text: str) -> None: ...  # something the user should know now (the run waits for a lock)


class _NoProgress:
    def plan(self, files: int, total_bytes: int) -> None:
        pass

    def advance(self, files: int, nbytes: int, lines: int, rows: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass


@dataclass
class KindCounts:
    lines_read: int = 0
    loaded: int = 0
    duplicates: int = 0
    rejected: int = 0
    held_back: int = 0
    other_market: int = 0


@dataclass
class RunSummary:
    run_id: str
    scope: str
    source: str
    target: str
    staging: str
    unit_bytes: int  # the run's --unit-size
    kinds: dict[str, KindCounts] = field(default_factory=lambda: {k.value: KindCounts() for k in TABLE_OF})
    tables: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    reasons: Counter = field(default_factory=Counter)
    files: Counter = field(default_factory=Counter)
    universe: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    stages: Counter = field(default_factory=Counter)  # seconds per stage: scan, normalize, dedup, stage, load
    commits: int = 0
    seconds: float = 0.0
    status: str = "running"
    error: str | None = None  # a failed run's cause, as the user was told it
    holidays: list[str] = field(default_factory=list)  # the holiday list the run flagged rows with (ISO dates)
    reflagged: Counter = field(default_factory=Counter)  # rows flagged again for a changed holiday list, by trade date

    def total(self, attr: str) -> int:
        return sum(getattr(k, attr) for k in self.kinds.values())

    @property
    def counts(self) -> dict[str, int]:
        return {a: self.total(a) for a in ("lines_read", "loaded", "duplicates", "rejected", "held_back")}

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "error": self.error,
            "scope": self.scope,
            "source": self.source,
            "target": self.target,
            "staging": self.staging,
            "unit_bytes": self.unit_bytes,
            **self.counts,
            "other_market": self.total("other_market"),
            "kinds": {k: vars(v) for k, v in self.kinds.items()},
            "tables": {
                t: {"inserted": c["inserted"], "updated": c["updated"], "deleted": c["deleted"]}
                for t, c in sorted(self.tables.items())
            },
            "rejects_by_reason": dict(sorted(self.reasons.items())),
            "universe": {k: self.universe[k] for k in ("files_read", "symbols_loaded", "files_rejected")},
            "files": dict(sorted(self.files.items())),
            "commits": self.commits,
            "stage_seconds": {k: round(v, 3) for k, v in sorted(self.stages.items())},
            "warnings": self.warnings,
            "holidays": self.holidays,
            "reflagged": {d.isoformat(): n for d, n in sorted(self.reflagged.items())},
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Read:
    """One file's planned read in this run."""

    file: scan.ArchiveFile
    start: int
    first_line: int | None  # None: the line after the file's previous chunk, known once that is read
    restart: bool
    end: int | None = None  # a chunk's end (just after a newline); None: the end of the file
    retake: bool = False  # starts at a last line an earlier run read without its newline: read it again

    @property
    def new_bytes(self) -> int:
        return (self.file.size if self.end is None else self.end) - self.start

    def chunks(self, size: int) -> list[_Read]:
        """This read cut at line boundaries into chunks of about ``size`` bytes, so that no file is read
        and decoded whole, however big; each chunk's first line is numbered when it is read."""
        cuts = scan.line_boundaries(self.file, self.start, size) if self.new_bytes > size else []
        if not cuts:
            return [self]
        edges = [self.start, *cuts, None]
        return [
            _Read(self.file, a, self.first_line if i == 0 else None, self.restart and i == 0, b, self.retake and i == 0)
            for i, (a, b) in enumerate(zip(edges, edges[1:]))
        ]


# A unit's reject rows past this share of its bytes (8 MB of a 128 MB unit) go to a spill file as each
# file's are cut, and into the database a file's at a time: on a day of the corrupt parser window every
# line is rejected with its raw text (70 MB a day at 1M, twice the typed rows of a normal day), and two
# such days, one loading while the next is prepared, were the peak of the 1M and 10M runs (CLI, SQLite:
# 582-589 MB before, 553-558 MB after at 1M; 658-662 MB before, 590-613 MB after at 10M; as fast).
SPILL_SHARE = 1 / 16


def _reason_counts(rejects: pl.DataFrame) -> Counter:
    return Counter(dict(rejects.group_by("reason").len().iter_rows()))


@dataclass
class _Rejects:
    """A unit's etl_rejects rows: in memory, or in an Arrow IPC stream under the staging directory."""

    frame: pl.DataFrame  # the rows, when not spilled
    reasons: Counter  # rows by reason, spilled or not
    spill: Path | None = None

    @classmethod
    def of(cls, frame: pl.DataFrame) -> _Rejects:
        return cls(frame, _reason_counts(frame))

    @property
    def height(self) -> int:
        return sum(self.reasons.values())

    def batches(self) -> Iterator[pl.DataFrame]:
        """The rows, a spilled file's at a time (as often as asked: a load may be retried as an upsert)."""
        if self.spill is None:
            yield self.frame
            return
        import pyarrow as pa

        with pa.OSFile(str(self.spill)) as fh, pa.ipc.open_stream(fh) as reader:
            for batch in reader:
                yield pl.DataFrame(pl.from_arrow(batch))

    def discard(self) -> None:
        if self.spill is not None:
            self.spill.unlink(missing_ok=True)


class _RejectSink:
    """Collects a unit's reject rows file by file; once they pass ``limit`` bytes, streams them to ``path``."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path, self.limit = path, limit
        self.parts: list[pl.DataFrame] = []  # held until the limit is passed
        self.size = 0
        self.reasons: Counter = Counter()
        self.writer: Any = None

    def add(self, part: pl.DataFrame) -> None:
        if part.height == 0:
            return
        self.reasons.update(_reason_counts(part))
        self.parts.append(part)
        if self.writer is None:
            self.size += part.estimated_size()
            if self.size <= self.limit:
                return
            import pyarrow as pa

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pa.ipc.new_stream(str(self.path), self.parts[0].to_arrow().schema)
        for p in self.parts:
            self.writer.write_table(p.to_arrow())
        self.parts = []

    def close(self) -> _Rejects:
        if self.writer is None:
            frame = pl.concat(self.parts) if self.parts else pl.DataFrame(schema=ETL_REJECTS.polars_schema())
            return _Rejects(frame, self.reasons)
        self.writer.close()
        return _Rejects(pl.DataFrame(schema=ETL_REJECTS.polars_schema()), self.reasons, self.path)


@dataclass
class _Prepared:
    """One unit extracted and normalized, ready for dedup and load."""

    unit: list[_Read]
    kind: Kind
    manifest_rows: list[dict[str, Any]]  # the unit's files as the manifest will record them
    nbytes: int  # new bytes read (the raw bytes themselves are released once the unit is prepared)
    rows: pl.DataFrame | None  # one winning row per record of the unit, in this run's scope
    duplicates: int  # copies that lost to another copy in the same unit
    other_market: int  # rows left to the run of their own market
    rejects: _Rejects  # etl_rejects rows of the unit (source_file, line_number, reason, raw_line, ...)
    held_back: int
    lines_in_unit: int
    timings: Counter
    watermark: pl.DataFrame  # etl_watermark rows: the newest instant and file of every valid line, per market


@dataclass
class _Doc:
    """One changed universe document, read and normalized, for the run's next universe commit."""

    file: scan.ArchiveFile
    manifest_row: dict[str, Any]  # its size is the bytes read
    doc: normalize.UniverseDoc | None  # its date, generated_at and rows in this run's scope
    reject: pl.DataFrame | None  # its etl_rejects row, if the document was rejected
    cause: str | None = None  # why it was rejected, for the run's warnings

    @property
    def warning(self) -> str | None:
        """What the run says about the document: why it was rejected, or a note on one that loads."""
        if self.doc is None:
            return f"universe document {self.file.rel} rejected whole: {self.cause}"
        return f"universe document {self.file.rel}: {self.doc.note}" if self.doc.note else None


def _lock_file(staging: Path, name: str) -> Path:
    return staging / "_locks" / f"{name}.lock"


@contextmanager
def _scope_lock(staging: Path, scope: str, on_wait: Callable[[str], None]) -> Iterator[float]:
    """One run per market scope at a time; an all-markets run excludes every scoped run.

    Yields the seconds spent waiting for another run; ``on_wait`` hears, once, that the run waits."""
    lock_dir = _lock_file(staging, "global").parent
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a file where the folder belongs
        raise StagingError(f"{lock_dir} cannot be used as the lock folder ({exc.strerror or exc})") from None
    t0 = time.perf_counter()
    told = False

    def take(fh: Any, mode: int) -> None:
        nonlocal told
        try:
            fcntl.flock(fh, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if not told:
                on_wait(f"waiting for another observer etl run on {staging} to finish (the scope {scope} lock)")
                told = True
            fcntl.flock(fh, mode)

    with ExitStack() as stack:
        glob_fh = stack.enter_context(_lock_file(staging, "global").open("a"))
        take(glob_fh, fcntl.LOCK_EX if scope == "all" else fcntl.LOCK_SH)
        scope_fh = stack.enter_context(_lock_file(staging, f"scope={scope}").open("a"))
        take(scope_fh, fcntl.LOCK_EX)
        yield time.perf_counter() - t0 if told else 0.0


def _reconcile_readable(staging: Path, scope: str, target: Target) -> list[str]:
    """Settle the interrupted commits of every scope whose parts this run reads, before it reads any.

    Scopes share partition directories: a killed run's uncommitted parts in them would otherwise count
    as staged rows, and their lines as duplicates. An all-markets run reads every market's partitions
    and holds the global lock exclusively, so no other scope's run is alive. A market's run reads its own
    market's partitions, which only its scope and the all-markets scope write; no all-markets run can be
    alive beside it, and the scope's lock keeps two markets' runs from settling that scope at once.
    """
    notes = reconcile(staging, scope, target)
    if scope == "all":
        for other in manifest.scopes(staging):
            if other != "all":
                notes += [f"scope={other}: {n}" for n in reconcile(staging, other, target)]
    else:
        with _lock_file(staging, "scope=all").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            notes += [f"scope=all: {n}" for n in reconcile(staging, "all", target)]
    return notes


def _check_staging_belongs_to(files: pl.DataFrame, staging: Path, target: Target, shown: str) -> None:
    """Stop if the scope's manifest (``files``) records a commit the target does not have.

    The manifest says which bytes are loaded; a run trusts it and reads on from there. Pointed at
    another database (a new --target with the same, or the default, staging directory), the run would
    read nothing new and load nothing, successfully. After ``reconcile`` a manifest and its own
    database agree, so its newest commit must be in ``etl_runs``.
    """
    newest = manifest.newest_commit(files)
    if newest is None:
        return
    run_id, seq = newest
    if target.committed_seq(run_id) < seq:
        raise EtlError(
            f"the staging directory {staging} belongs to another database: {shown} does not have its "
            f"commit {seq} of run {run_id}; give this target a staging directory of its own (--staging), "
            "or use the target that staging was loaded into"
        )


def _check_source(source: Path) -> None:
    if not scan.is_utf8(str(source)):
        raise EtlError(f"the source archive path {str(source)!r} is not valid UTF-8: rename it, or use a link that is")
    if not source.exists():
        raise EtlError(f"the source archive '{source}' does not exist (set --source, or source in observer.toml)")
    if not source.is_dir():
        raise EtlError(f"the source archive '{source}' is not a directory")


def _check_staging(staging: Path) -> None:
    if staging.resolve() == (Path(__file__).resolve().parent.parent / "staging"):
        raise EtlError(f"staging directory {staging} is the code package staging/: choose another with --staging")
    problem = unwritable(staging)
    if problem:
        raise EtlError(f"staging directory {staging} is not writable: {problem}")


CRASH_POINTS = (
    "pending_begun", "parts_written", "pending_written", "db_committed", "manifest_promoted", "obsolete_removed",
    "promoted",
)


def _crash_point(point: str, seq: int) -> None:
    """Test hook for the kill -9 matrix: ``OBSERVER_ETL_CRASH_AT=<point>@<seq>`` kills the process there."""
    if os.environ.get("OBSERVER_ETL_CRASH_AT") == f"{point}@{seq}":
        os.kill(os.getpid(), 9)


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def run_etl(opts: RunOptions, progress: Progress | None = None) -> RunSummary:
    """One ETL run over ``opts.source`` into ``opts.target``; raises EtlError with a readable message."""
    if opts.unit_bytes < 1:  # the CLI's parse_size never gives one; a library caller might
        raise EtlError(f"the unit size must be at least one byte, not {opts.unit_bytes}")
    # A run refused before it starts (a wrong target, an unreachable server, tables that cannot be
    # migrated) leaves no empty staging folder it made; once a run took its lock, the folder holds the
    # lock files and stays.
    made = missing_dirs(opts.staging)
    try:
        return _run_etl(opts, progress or _NoProgress())
    finally:
        remove_if_empty(made)


def _run_etl(opts: RunOptions, progress: Progress) -> RunSummary:
    t0 = time.perf_counter()
    try:
        target_url = parse_target(opts.target)
        _check_source(opts.source)
        _check_staging(opts.staging)
        master = load_security_master(opts.security_master) if opts.security_master else None
        holidays = load_holidays(opts.holidays) if opts.holidays else frozenset()
        target = Target(target_url)
    except (TargetError, ConfigError) as exc:
        raise EtlError(str(exc)) from None
    run_id = new_run_id()
    summary = RunSummary(run_id, opts.scope, str(opts.source), target_url.redacted, str(opts.staging), opts.unit_bytes)
    try:
        target.ensure_schema()
        with _scope_lock(opts.staging, opts.scope, progress.note) as waited:
            if waited:
                summary.warnings.append(f"waited {waited:.1f} s for another run on this staging directory to finish")
            for note in _reconcile_readable(opts.staging, opts.scope, target):
                summary.warnings.append(f"recovered an interrupted commit: {note}")
            now = datetime.now(timezone.utc)
            ctx = normalize.Context(opts.default_market, master, holidays, now)
            runner = _Runner(opts, target, ctx, summary, progress)  # reads the manifest
            _check_staging_belongs_to(runner.manifest, opts.staging, target, target_url.redacted)
            summary.holidays = sorted(d.isoformat() for d in holidays)
            # From here on the run is in etl_runs, and whatever stops it marks it failed there.
            # The archive as an absolute, normalized path (links kept): whoever reads etl_runs later cannot
            # know the directory a relative --source was given in, and '../a/.' and 'a' are one archive.
            target.start_run(run_id, opts.scope, os.path.abspath(opts.source), now)
            try:
                deferred = target.begin_bulk_load(DATA_TABLES)
                runner.run()
                target.end_bulk_load(deferred)
                # Inside the try: a Ctrl-C or SIGTERM before this row commits marks the run failed, as
                # any other stop does, instead of leaving it 'running' for the next run to call abandoned.
                summary.status = "succeeded"
                summary.seconds = time.perf_counter() - t0
                target.finish_run(run_id, "succeeded", summary.counts, json.dumps(summary.to_dict()))
            except BaseException as exc:
                failure = _failure(exc, opts.staging)
                summary.status = "failed"
                summary.seconds = time.perf_counter() - t0
                # The row says why, in the sentence the user saw (or the bug's own), for whoever reads
                # etl_runs later: a scheduler's log may be long gone.
                summary.error = (
                    "interrupted (Ctrl-C or SIGTERM)" if isinstance(failure, KeyboardInterrupt)
                    else str(failure) if failure is not None
                    else f"internal error, please report it: {type(exc).__name__}: {exc}".splitlines()[0]
                )
                try:
                    target.finish_run(run_id, "failed", summary.counts, json.dumps(summary.to_dict()))
                except Exception:  # noqa: BLE001 - the original error matters more
                    pass
                if failure is None:
                    raise
                raise failure from None
    except TargetError as exc:  # e.g. an existing table that this schema cannot be migrated to
        raise EtlError(str(exc)) from None
    except StagingError as exc:  # the manifest or an interrupted commit's record, before the run began
        raise _damaged_staging(opts.staging, exc) from None
    except adbc_driver_manager.Error as exc:
        raise EtlError(f"the target database {target_url.redacted} failed: {error_line(exc)}") from None
    finally:
        try:
            target.close()
        except KeyboardInterrupt:
            # A stop that comes while a succeeded run closes (SQLite's last checkpoint) finds nothing to
            # stop: every commit and the run's row are in. Reporting it as interrupted would contradict
            # etl_runs (the CLI would exit 143 for a run recorded as succeeded).
            if summary.status != "succeeded":
                raise
    return summary


def _failure(exc: BaseException, staging: Path) -> BaseException | None:
    """What a run that began loading raises for ``exc``: an interrupt, or an EtlError with one readable
    sentence; None for a bug (raised as it is)."""
    if _interrupted(exc):
        return KeyboardInterrupt()
    if isinstance(exc, adbc_driver_manager.Error):
        return EtlError(f"the target database failed during the load: {error_line(exc)}")
    if isinstance(exc, StagingError):
        return _damaged_staging(staging, exc)
    io = _io_failure(exc)
    if io is not None:
        return EtlError(
            f"the run stopped at a file it could not read or write ({io}); every commit before "
            "it stands, and a run started once that is fixed goes on from there"
        )
    return None


def _gzip_of_read(source: Path, rel: str, consumed: dict[str, int]) -> bool:
    """Whether ``rel`` is a gzip copy of an archive file this scope read to its end: the size of its
    content (gzip's trailer, modulo 4 GiB) is what the manifest consumed of ``x.jsonl`` for ``x.jsonl.gz``."""
    read = consumed.get(rel[:-3]) if rel.endswith(".gz") else None
    if read is None:
        return False
    try:
        with (source / rel).open("rb") as fh:
            fh.seek(-4, os.SEEK_END)
            size = int.from_bytes(fh.read(4), "little")
    except OSError:  # shorter than a gzip trailer, or unreadable: named, as any file not read
        return False
    return size == read % 2**32


def _written_at(doc: normalize.UniverseDoc, f: scan.ArchiveFile) -> datetime:
    """When a universe document was written: its generated_at, else (a simplified older file) its file
    name's date at 00:00 KST, a file being named by the day it is written."""
    if doc.generated_at is not None:
        return doc.generated_at
    return datetime(f.file_date.year, f.file_date.month, f.file_date.day, tzinfo=timezone.utc) - normalize.KST_OFFSET


def _interrupted(exc: BaseException) -> bool:
    """Ctrl-C, also where code that was unwinding from it failed in turn: shutil.rmtree interrupted
    between closing a directory and its own cleanup closes it again (EBADF, seen once in ~50 runs)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__context__
    return False


def _damaged_staging(staging: Path, exc: StagingError) -> EtlError:
    """Staged files are the record of what was loaded: a run cannot go on without them, nor guess them."""
    return EtlError(
        f"the staging directory {staging} is damaged: {exc}; restore it from a backup, or load the archive "
        "again into a new staging directory and an empty database"
    )


def _io_failure(exc: BaseException) -> str | None:
    """The one-line cause of a failed read or write (a full disk, a vanished file), else None: a bug."""
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc.strerror or exc)
    if isinstance(exc, pl.exceptions.PolarsError) and "os error" in str(exc):  # Polars' own file IO
        return str(exc).splitlines()[0]
    return None


# A run's units are capped at ``RunOptions.unit_bytes`` new bytes (``--unit-size``).
# New bytes prepared ahead of the unit being loaded: None, one unit's worth (the bench's memory probe sets it).
LOOKAHEAD_BYTES: int | None = None
# Most bytes of one file read and decoded at once (and never more than a unit): a file bigger than this
# (a whole day's scalp/daily file) is read in line-aligned chunks, several to a unit, instead of standing
# alone as one unit of its size. A 159 MB daily file (five days of the 1M bench archive's hours in one):
# peak RSS 770 MB in 32 MiB chunks against 954 MB read whole, 4.44 against 4.77 s; an hour file (12 MB
# at the contract's density) is one chunk.
CHUNK_BYTES = 32 * 1024 * 1024


def _new_bytes(unit: list[_Read]) -> int:
    return sum(r.new_bytes for r in unit)


def _cap(items: Sequence[T], limit: int, size: Callable[[T], int]) -> list[list[T]]:
    """Split ``items``, in their order, into runs of at most ``limit`` bytes by ``size`` (a bigger one
    stands alone): a unit's files or chunks of files, a run's universe documents."""
    out: list[list[T]] = [[]]
    total = 0
    for item in items:
        if out[-1] and total + size(item) > limit:
            out.append([])
            total = 0
        out[-1].append(item)
        total += size(item)
    return out


def _commit_groups(units: Sequence[list[_Read]], limit: int) -> list[int]:
    """How many consecutive units each commit takes: a trade date's units of different kinds (its scalp
    file's last unit and its swing file) share one commit while together within ``limit`` bytes.

    Every commit waits on its fsyncs (the transaction's, the staged parts', the manifest's), whatever its
    size; a day's small swing unit committed on its own was a third of a 10M run's commits. Units of one
    kind never share a commit: a later unit is deduplicated against what the earlier one staged.
    """
    sizes: list[int] = []
    day: date | None = None
    kinds: set[Kind] = set()
    total = 0
    for unit in units:
        f, n = unit[0].file, _new_bytes(unit)
        if f.file_date == day and f.kind not in kinds and total + n <= limit:
            sizes[-1] += 1
        else:
            sizes.append(1)
            day, kinds, total = f.file_date, set(), 0
        kinds.add(f.kind)
        total += n
    return sizes


def _partitions(rows: pl.DataFrame, table: Table) -> dict[tuple[Any, ...], pl.DataFrame]:
    """The rows of each (market, trade date) partition; a unit of one partition (the usual case) is not
    copied: ``partition_by`` gathers every row again, a second copy of a day's ticks at the peak."""
    keys = rows.select(table.partition_by).unique()
    if keys.height == 1:
        return {keys.row(0): rows}
    return rows.partition_by(table.partition_by, as_dict=True, maintain_order=True)


@contextmanager
def _timed(summary: RunSummary, stage: str) -> Iterator[None]:
    t = time.perf_counter()
    try:
        yield
    finally:
        summary.stages[stage] += time.perf_counter() - t


class _Runner:
    def __init__(
        self, opts: RunOptions, target: Target, ctx: normalize.Context, summary: RunSummary, progress: Progress
    ) -> None:
        self.opts, self.target, self.ctx, self.summary, self.progress = opts, target, ctx, summary, progress
        self.staging = opts.staging
        self.seq = 0
        self.manifest = manifest.load(self.staging, opts.scope)
        self._resume: dict[str, tuple[int, int]] = {}  # the prepare worker's: file -> (byte, next line) after its last chunk
        self._spills = itertools.count()  # the prepare worker's: names of its units' reject spill files
        self._documents: dict[str, scan.ArchiveFile] = {}  # every universe document of the archive, by path (_plan)
        self._known_docs = pl.DataFrame(schema=manifest.MANIFEST_SCHEMA)  # (_plan)
        self._stale_docs: set[str] = set()  # (_plan)
        self._other_markets: set[str] = set()  # the prepare worker's: markets of rows a --market run left out
        self._stager: ThreadPoolExecutor  # writes a commit's staged files while the database loads (run())
        self._flag_lists = target.flag_lists()  # the holiday list each market's rows carry, as committed

    # -- planning ---------------------------------------------------------------------------------
    def _plan(self) -> tuple[list[_Read], list[scan.ArchiveFile], set[str]]:
        files, unknown = scan.discover(self.opts.source)
        self.summary.files["unrecognised"] += len(unknown)
        if not files:  # a new, empty archive; or --source one level off the archive root
            self.summary.warnings.append(
                f"no archive file under {self.opts.source} ({len(unknown)} other file{'' if len(unknown) == 1 else 's'}): "
                "--source names the archive root, the directory that holds assets/scalp, assets/swing and universe"
            )
        # A file in a scalp or swing folder whose name is not a real date is an archive file misnamed
        # (20260231_10.jsonl): counted as unrecognised, it would be missing from the database unseen.
        # A gzip copy of a file read to its last byte (an hour rotated after it was loaded whole) holds
        # nothing the database lacks: naming it in every run from then on would bury the warning that
        # matters. One rotated while it still grew holds lines never read, and is named.
        misnamed = [u for u in unknown if PurePosixPath(u).parent.name in ("scalp", "swing")]
        if misnamed:
            consumed = dict(zip(self.manifest["path"], self.manifest["consumed_bytes"]))
            misnamed = [u for u in misnamed if not _gzip_of_read(self.opts.source, u, consumed)]
        if misnamed:
            self.summary.warnings.append(
                f"{len(misnamed)} file{'' if len(misnamed) == 1 else 's'} in scalp/ or swing/ not read, not named "
                f"YYYYMMDD_HH.jsonl or YYYYMMDD.jsonl with a real date: {', '.join(misnamed[:3])}"
                + (", ..." if len(misnamed) > 3 else "")
            )
        known = {r["path"]: r for r in self.manifest.iter_rows(named=True)}
        newest = scan.newest_of_series([f for f in files if f.kind in TABLE_OF])
        self._documents = {f.rel: f for f in files if f.kind == Kind.UNIVERSE}
        every = manifest.documents(self.staging)
        # What every document is, as the latest run of any scope read it (its date and time are its content's).
        self._known_docs = every.sort("path", "run_id", "commit_seq").group_by("path", maintain_order=True).last()
        # Documents whose version here is not what this scope's partitions may hold: a run of a scope that
        # writes them (the all-markets scope for a market's; every scope for the all-markets') read another
        # version after this scope did. They are read again, however unchanged for this scope.
        writers = every if self.opts.market is None else every.filter(pl.col("scope").is_in(["all", self.opts.scope]))
        mine = self.manifest.filter(pl.col("kind") == "universe").select("path", _r="run_id", _s="commit_seq", _h="content_hash")
        self._stale_docs = set(
            writers.join(mine, on="path")
            .filter(
                ((pl.col("run_id") > pl.col("_r")) | ((pl.col("run_id") == pl.col("_r")) & (pl.col("commit_seq") > pl.col("_s"))))
                & pl.col("content_hash").ne_missing(pl.col("_h"))
            )
            ["path"].to_list()
        )
        reads: list[_Read] = []
        docs: list[scan.ArchiveFile] = []
        for f in files:
            self.summary.files[f.kind.value] += 1
            entry = known.get(f.rel)
            if f.kind == Kind.UNIVERSE:
                if (entry is None or entry["size"] != f.size or entry["mtime_ns"] != f.mtime_ns
                        or entry["content_hash"] is None  # (an older manifest: see manifest.load)
                        or f.rel in self._stale_docs):
                    docs.append(f)  # content hash decides whether it really changed
                continue
            if f.kind not in TABLE_OF:
                continue
            if entry is None:
                reads.append(_Read(f, 0, 1, False))
                continue
            # A file whose size and mtime are as recorded was not rewritten: only a changed one has its
            # head read and hashed again.
            unchanged = entry["size"] == f.size and entry["mtime_ns"] == f.mtime_ns
            tail_read = bool(entry["tail_read"])
            # A changed file was rewritten, not appended to, if it shrank or if its head or the bytes just
            # before where the last run stopped differ (a file replaced by a longer version with the same
            # head would otherwise be read on from an offset inside other lines).
            end, end_len = entry["consumed_bytes"], entry["end_fp_len"] or 0  # (null in older manifests)
            restart = not unchanged and (
                f.size < end
                or (tail_read and f.size < entry["size"])  # the last line it read is no longer there
                or (entry["fp_len"] > 0 and scan.fingerprint_at(f.path, 0, entry["fp_len"]) != entry["fp_hash"])
                or (end_len > 0 and scan.fingerprint_at(f.path, end - end_len, end_len) != entry["end_fp_hash"])
            )
            if restart:
                self.summary.warnings.append(f"{f.rel} was rewritten (it shrank, or bytes already read changed): reprocessing it")
                reads.append(_Read(f, 0, 1, True))
            elif unchanged and tail_read:
                pass  # its unterminated last line was read when its writer had moved on: nothing new
            elif unchanged and f.rel in newest:
                # Only the incomplete last line the last run held back, and its writer may still finish
                # it: held back again without opening the file (a run with nothing new opens none).
                self.summary.kinds[f.kind.value].held_back += int(f.size > entry["consumed_bytes"])
            elif f.size > entry["consumed_bytes"]:
                reads.append(_Read(f, entry["consumed_bytes"], entry["lines_consumed"] + 1, False, retake=tail_read))
        return reads, docs, newest

    def run(self) -> None:
        spills = spill_dir(self.staging, self.opts.scope)
        shutil.rmtree(spills, ignore_errors=True)  # a killed run's: this scope's lock is ours
        remove_stray_temporaries(self.staging, DATA_TABLES, self.opts.market)
        try:
            self._run()
        finally:
            shutil.rmtree(spills, ignore_errors=True)
        m = self.opts.market
        if m is not None and self._other_markets and not self.summary.total("loaded") and not any(
            market_dir(self.staging, t, m).is_dir() for t in DATA_TABLES
        ):  # a misspelt --market loads nothing, successfully, run after run
            self.summary.warnings.append(
                f"no row of market {m} loaded, nor staged before; the valid rows read are of "
                f"{', '.join(sorted(self._other_markets)[:5])} (market names are case-sensitive)"
            )

    def _run(self) -> None:
        reads, docs, newest = self._plan()
        self.progress.plan(len(reads) + len(docs), _new_bytes(reads))
        unit_bytes = self.opts.unit_bytes
        lookahead = unit_bytes if LOOKAHEAD_BYTES is None else LOOKAHEAD_BYTES
        units: dict[tuple[date, str], list[_Read]] = defaultdict(list)
        for r in reads:
            units[(r.file.file_date, r.file.kind.value)].extend(r.chunks(min(CHUNK_BYTES, unit_bytes)))
        ordered = [
            part
            for k in sorted(units)
            for part in _cap(sorted(units[k], key=lambda r: (r.file.rel, r.start)), unit_bytes, lambda r: r.new_bytes)
        ]
        # Reading, decoding and normalizing the units ahead needs no shared state: it runs on the second
        # core while this unit is deduplicated, staged and loaded (Polars and ADBC release the GIL). The
        # worker keeps up to a unit's worth of new bytes prepared ahead, not a fixed number of units: a
        # day's small swing unit must not leave the worker idle while the day's big scalp unit loads.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare") as pool, ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="stage"
        ) as self._stager:
            self._reflag()
            ahead: deque[tuple[Future[_Prepared], int]] = deque()
            taken = 0  # units handed to _finish

            def fill(at_least: int) -> None:
                """Queue units up to index ``at_least``, then more while they fit in ``lookahead`` bytes."""
                nxt = taken + len(ahead)
                while nxt < len(ordered) and (
                    nxt <= at_least or sum(n for _, n in ahead) + _new_bytes(ordered[nxt]) <= lookahead
                ):
                    ahead.append((pool.submit(self._prepare, ordered[nxt], newest), _new_bytes(ordered[nxt])))
                    nxt += 1

            for group in _commit_groups(ordered, unit_bytes):
                fill(taken + group - 1)
                futures = [ahead.popleft()[0] for _ in range(group)]
                taken += group
                fill(taken)  # the worker prepares what follows while these units are finished
                self._finish([f.result() for f in futures])
            # Universe documents are small (a few thousand symbols each): a run's changed ones go in one
            # commit, which decides every date they name, or named before, at once.
            batch = [doc for doc in map(self._read_universe, sorted(docs, key=lambda f: (f.file_date, f.rel))) if doc]
            if batch:
                self._commit_universe(batch)

    # -- quality flags of rows already loaded ---------------------------------------------------------
    def _reflag(self) -> None:
        """Flag the staged and loaded rows again where this run's holiday list differs from the one they
        were flagged with, in the run's first commit, before any new line: a holiday added to the list
        later makes its day's rows ``non_trading_day`` where they are, without a reload (which the archive
        may no longer allow: universe files are deleted upstream).

        ``etl_flag_lists`` says, per market, which list its rows carry; a market staged here without one
        (a database from before that table) has every staged day checked, once.
        """
        holidays = self.ctx.holidays
        stale = {  # market -> the days to check (None: every staged day)
            m: None if (listed := self._flag_lists.get(m)) is None else listed ^ holidays
            for table in TABLE_OF.values() for m in self._staged_markets(table) if self._flag_lists.get(m) != holidays
        }
        if not stale:
            return
        flag = {table: normalize.row_quality_flag(table, holidays) for table in TABLE_OF.values()}
        checks = [
            (table, m, day) for table in TABLE_OF.values() for m, days in stale.items()
            for _, day, _ in partitions(self.staging, table, m) if days is None or day in days
        ]
        deltas: list[dedup.PartitionDelta] = []
        changed: Counter = Counter()
        with _timed(self.summary, "dedup"):
            for table, m, day in checks:
                delta = dedup.reflag_partition(self.staging, table, m, day, flag[table], self.ctx.etl_timestamp)
                if delta is not None:
                    deltas.append(delta)
                    changed[day] += delta.updates.height
        self._commit(deltas, [], None, [], flagged=sorted(stale))
        self.summary.reflagged = changed

    def _staged_markets(self, table: Table) -> list[str]:
        """The markets of this run's scope that ``table`` has staged partitions of."""
        return [m for m in markets(self.staging, table) if self.opts.market in (None, m)]

    # -- JSONL units ------------------------------------------------------------------------------
    def _prepare(self, unit: list[_Read], newest: set[str]) -> _Prepared:
        """Extract and normalize one unit; pure (touches no staged, manifest or database state).

        Each file goes from bytes to typed rows and reject rows on its own, and its bytes and decoded
        JSON are released before the next file is read: a unit holds normalized rows, never the whole
        unit's raw text, so memory follows the largest chunk rather than the size of a day or a file.
        """
        kind = unit[0].file.kind
        timings: Counter = Counter()
        row_parts: list[pl.DataFrame] = []
        reject_sink = _RejectSink(
            spill_dir(self.staging, self.opts.scope) / f"{self.summary.run_id}-{next(self._spills)}.arrow",
            int(self.opts.unit_bytes * SPILL_SHARE),
        )
        manifest_rows: dict[str, dict[str, Any]] = {}  # by path: a file's later chunk in the unit replaces its row
        held_back = lines_in_unit = nbytes = 0
        for r in unit:
            first_line = r.first_line
            if first_line is None:  # a later chunk: its lines are numbered on from the chunk before
                pos, first_line = self._resume.get(r.file.rel, (-1, 0))
                if pos != r.start:  # the chunk before ended short (the file shrank): the next run resumes
                    continue
            t = time.perf_counter()
            rng = scan.read_new_bytes(r.file, r.start, first_line, r.file.rel in newest, r.end)
            dec = scan.decode(rng)
            timings["scan"] += time.perf_counter() - t
            lit = dict(source_file=pl.lit(r.file.rel), source_line=pl.col("line_idx") + first_line)
            rejects = [dec.rejects.with_columns(**lit)]
            # The manifest resumes after the last complete line. A last line without its newline, in a
            # file whose writer moved on, is rejected as truncated (even a whole record: the line may yet
            # go on), and read again from its start if the file ever grows: the writer finishing it
            # late, or another writer appending to the file.
            lines = first_line - 1 + rng.n_lines
            if rng.tail_is_truncated:
                rejects.append(
                    pl.DataFrame(
                        {"line_idx": [rng.n_lines], "reason": ["truncated_line"]},
                        schema={"line_idx": pl.Int64, "reason": pl.String},
                    ).with_columns(**lit)
                )
            elif rng.tail:
                held_back += 1
            self._resume[r.file.rel] = (rng.end, lines + 1)
            lines_in_unit += rng.n_lines + int(rng.tail_is_truncated)
            nbytes += len(rng.data)
            manifest_rows[r.file.rel] = self._manifest_row(r.file, rng, lines)
            file_rejects = pl.concat(rejects).select("source_file", "source_line", "reason")
            if dec.rows.height:
                t = time.perf_counter()
                raw = dec.rows.with_columns(**lit).drop("line_idx")
                rows, bad = normalize.NORMALIZERS[kind](raw.lazy(), self.ctx)
                row_parts.append(rows)
                file_rejects = pl.concat([file_rejects, bad])
                timings["normalize"] += time.perf_counter() - t
            reject_sink.add(self._reject_rows(file_rejects, rng, kind.value))
            del rng, dec  # free this file's bytes before the next file is read, not after
        reject_rows = reject_sink.close()
        rows, dups, other = None, 0, 0
        watermark = pl.DataFrame(schema=ETL_WATERMARK.polars_schema())
        if lines_in_unit:  # (a unit whose every line was rejected has no rows, but commits its rejects)
            rows = pl.concat(row_parts) if row_parts else pl.DataFrame(schema=TABLE_OF[kind].polars_schema())
            if self.opts.market is not None:
                in_scope = rows.filter(pl.col("market") == self.opts.market)
                if in_scope.height < rows.height:
                    self._other_markets.update(rows["market"].unique().to_list())
                rows, other = in_scope, rows.height - in_scope.height
            # Of every valid line, the copies that will lose included: which copy of a record wins can
            # change with a later run, and a mark taken from the winners would then depend on how the
            # archive was split into runs (and it never moves back).
            watermark = watermark_rows(
                rows, TABLE_OF[kind].source_type or kind.value, TIME_COL[kind], self.summary.run_id,
                self.ctx.etl_timestamp,
            )
            t = time.perf_counter()
            rows, dups = dedup.winners_in_batch(rows, TABLE_OF[kind])
            timings["dedup"] += time.perf_counter() - t
        return _Prepared(
            unit, kind, list(manifest_rows.values()), nbytes, rows, dups, other, reject_rows, held_back, lines_in_unit,
            timings, watermark,
        )

    def _finish(self, group: list[_Prepared]) -> None:
        """Deduplicate, account, stage and load prepared units in one commit (units of distinct kinds)."""
        for p in group:
            self.summary.stages.update(p.timings)
            self.summary.kinds[p.kind.value].held_back += p.held_back
        # Only held-back tails: nothing to commit, the manifest already says where to resume. (A rewritten
        # file that is now empty still commits: its old rejects go, and the manifest records it as it is,
        # or every later run would find it rewritten again.)
        group = [p for p in group if p.lines_in_unit or any(r.restart for r in p.unit)]
        if not group:
            return
        deltas: list[dedup.PartitionDelta] = []
        outcome: list[tuple[int, int]] = []  # (loaded, duplicates) of each unit
        for p in group:
            table = TABLE_OF[p.kind]
            with _timed(self.summary, "dedup"):
                unit_deltas = [] if p.rows is None else [
                    dedup.resolve_partition(self.staging, table, m, d, part)
                    for (m, d), part in _partitions(p.rows, table).items()
                ]
            loaded = sum(d.loaded for d in unit_deltas)
            dups = p.duplicates + sum(d.duplicates for d in unit_deltas)
            if p.rejects.height + loaded + dups + p.other_market != p.lines_in_unit:
                raise AssertionError(f"line accounting broke in {p.unit[0].file.rel}: this is a bug, please report it")
            deltas += unit_deltas
            outcome.append((loaded, dups))
        # (only a file's first chunk restarts or retakes, and it knows its first line)
        reread = [
            (r.file.rel, r.first_line) for p in group for r in p.unit if (r.restart or r.retake) and r.first_line is not None
        ]
        try:
            with self._counted_if_committed():  # the commit records the counts with these units in them
                for p, (loaded, dups) in zip(group, outcome):
                    counts = self.summary.kinds[p.kind.value]
                    counts.other_market += p.other_market
                    counts.loaded += loaded
                    counts.duplicates += dups
                    counts.rejected += p.rejects.height
                    counts.lines_read += p.rejects.height + loaded + dups
                    self.summary.reasons.update(p.rejects.reasons)
                self._commit(
                    deltas,
                    [p.rejects for p in group],
                    pl.concat([p.watermark for p in group]),
                    [row for p in group for row in p.manifest_rows],
                    reread=reread,
                )
        finally:
            for p in group:
                p.rejects.discard()
        for p, (loaded, _) in zip(group, outcome):
            done = sum(r.end is None for r in p.unit)  # files read to their end (a chunk before the last is not one)
            self.progress.advance(done, p.nbytes, p.lines_in_unit, loaded)

    def _manifest_row(self, f: scan.ArchiveFile, rng: scan.ByteRange, lines: int) -> dict[str, Any]:
        fp_len = min(rng.end, scan.FINGERPRINT_BYTES)
        return {
            "path": f.rel, "kind": f.kind.value, "size": rng.size, "mtime_ns": f.mtime_ns,
            "consumed_bytes": rng.end, "lines_consumed": lines, "tail_read": rng.tail_is_truncated,
            "fp_len": fp_len, "fp_hash": rng.fingerprint_of(0, fp_len),
            "end_fp_len": fp_len, "end_fp_hash": rng.fingerprint_of(rng.end - fp_len, fp_len),
            "content_hash": None, "run_id": self.summary.run_id,
        }

    def _reject_rows(self, rejects: pl.DataFrame, rng: scan.ByteRange, source_type: str) -> pl.DataFrame:
        """etl_rejects rows of one file's rejected lines (source_file, source_line, reason), raw text added."""
        if rejects.height == 0:
            return pl.DataFrame(schema=ETL_REJECTS.polars_schema())
        grp = rejects.sort("source_line")
        idx = (grp["source_line"] - rng.first_line).to_numpy()
        in_data = idx < rng.n_lines
        tail = pl.Series([scan.raw_text(rng.tail)] * int((~in_data).sum()), dtype=pl.String)
        return (
            grp.with_columns(raw_line=pl.concat([rng.raw_lines(idx[in_data]), tail]))
            .rename({"source_line": "line_number"})
            .with_columns(
                source_type=pl.lit(source_type),
                run_id=pl.lit(self.summary.run_id),
                etl_timestamp=pl.lit(self.ctx.etl_timestamp, dtype=pl.Datetime("us", "UTC")),
            )
            .select(ETL_REJECTS.column_names)
        )

    # -- universe documents -------------------------------------------------------------------------
    def _read_universe(self, f: scan.ArchiveFile) -> _Doc | None:
        """One changed universe document, normalized or rejected; None if its content is as last loaded."""
        data, content_hash = scan.read_document(f)
        known = self.manifest.filter(pl.col("path") == f.rel)
        if known.height and known["content_hash"][0] == content_hash and f.rel not in self._stale_docs:
            return None  # touched but unchanged: nothing to load
        result = self._universe_doc(f, data)
        # A rejected version (a rewrite caught half written) keeps the last good one's date and time.
        last = known.row(0, named=True) if known.height else {}
        good = isinstance(result, normalize.UniverseDoc)
        row = {
            "path": f.rel, "kind": f.kind.value, "size": len(data), "mtime_ns": f.mtime_ns,
            "consumed_bytes": len(data), "lines_consumed": 0, "tail_read": False, "fp_len": 0, "fp_hash": None,
            "end_fp_len": 0, "end_fp_hash": None, "content_hash": content_hash, "run_id": self.summary.run_id,
            "doc_date": result.day if good else last.get("doc_date"),  # type: ignore[union-attr]
            "doc_written_at": _written_at(result, f) if good else last.get("doc_written_at"),  # type: ignore[arg-type]
        }
        if isinstance(result, str):
            rej = pl.DataFrame(
                {
                    "source_file": [f.rel], "line_number": [0], "source_type": ["universe"], "reason": ["bad_universe_file"],
                    "raw_line": [scan.raw_text(data)], "run_id": [self.summary.run_id],
                    "etl_timestamp": [self.ctx.etl_timestamp],
                },
                schema=ETL_REJECTS.polars_schema(),
            )
            return _Doc(f, row, None, rej, result)
        return _Doc(f, row, result, None)

    def _universe_doc(self, f: scan.ArchiveFile, data: bytes) -> normalize.UniverseDoc | str:
        """A document's membership in this run's scope (none of this market's symbols: an empty one)."""
        try:
            doc: object = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return f"it is not UTF-8 JSON ({str(exc).splitlines()[0][:80]})"
        result = normalize.normalize_universe(doc, f.rel, f.file_date, self.ctx)
        if isinstance(result, str) or self.opts.market is None:
            return result
        return dataclasses.replace(result, rows=result.rows.filter(pl.col("market") == self.opts.market))

    def _memberships(self, batch: list[_Doc]) -> list[tuple[date, pl.DataFrame]]:
        """The membership each date touched by ``batch`` takes: the newest document naming it, by when it
        was written, then file name ("last writer wins", contract section 1), whichever order runs met
        them in. A date a document stopped naming goes to the next newest (read again from the archive),
        or is emptied; a date whose newest document is the one already loaded is left alone."""
        def named(files: pl.DataFrame) -> dict[str, tuple[date, datetime]]:
            docs = files.filter(pl.col("doc_date").is_not_null())
            return dict(zip(docs["path"], zip(docs["doc_date"], docs["doc_written_at"])))

        def newest_first(docs: dict[str, tuple[date, datetime]], day: date) -> list[str]:
            return [path for _, path in sorted(((at, path) for path, (d, at) in docs.items() if d == day), reverse=True)]

        before = named(self._known_docs)
        after = dict(before)
        for d in batch:
            after.pop(d.file.rel, None)
            if d.manifest_row["doc_date"] is not None:
                after[d.file.rel] = (d.manifest_row["doc_date"], d.manifest_row["doc_written_at"])
        fresh = {d.file.rel: d.doc for d in batch if d.doc is not None}
        held = self._staged_documents()  # what this scope's partitions hold, whichever scope wrote them
        days = {m[0] for d in batch for m in (before.get(d.file.rel), after.get(d.file.rel)) if m is not None}
        days |= {day for day, paths in held.items() if paths & {d.file.rel for d in batch}}
        out: list[tuple[date, pl.DataFrame]] = []
        for day in sorted(days):
            for path in newest_first(after, day):
                if path in fresh:
                    out.append((day, fresh[path].rows))
                    break
                if held.get(day) == {path}:
                    break  # the newest is the document loaded: nothing changes on this day
                doc = self._reread_universe(path, day)
                if doc is not None:
                    out.append((day, doc.rows))
                    break
            else:  # no document names this day any more
                out.append((day, pl.DataFrame(schema=MARKET_UNIVERSE.polars_schema())))
        return out

    def _reread_universe(self, path: str, day: date) -> normalize.UniverseDoc | None:
        """An unchanged document that is now its day's newest, read again; None if it is gone from the
        archive (upstream deletes documents after 14 days) or no longer a valid document of ``day``."""
        f = self._documents.get(path)
        if f is None:
            return None
        try:
            data, _ = scan.read_document(f)
        except FileNotFoundError:
            return None
        doc = self._universe_doc(f, data)
        return doc if isinstance(doc, normalize.UniverseDoc) and doc.day == day else None

    def _commit_universe(self, batch: list[_Doc]) -> None:
        """Load changed documents in one commit: the memberships of every date they touch."""
        memberships = self._memberships(batch)
        fresh = [d.doc for d in batch if d.doc is not None]
        wm = None
        if fresh:
            wm = watermark_rows(
                # Simplified universe files have no generated_at: their date (00:00 KST) stands in, never the clock.
                pl.concat([doc.rows for doc in fresh]).with_columns(
                    ts=pl.col("generated_at").fill_null(
                        normalize.utc_from_kst_wall(pl.col("date").cast(pl.Datetime("us")))
                    )
                ),
                "universe", "ts", self.summary.run_id, self.ctx.etl_timestamp,
            )
        rejected = [d.reject for d in batch if d.reject is not None]
        rejects = _Rejects.of(pl.concat(rejected) if rejected else pl.DataFrame(schema=ETL_REJECTS.polars_schema()))
        symbols = sum(rows.height for _, rows in memberships)
        with self._counted_if_committed():  # counted first, as a JSONL unit is
            self.summary.universe["files_read"] += len(batch)
            self.summary.universe["files_rejected"] += rejects.height
            self.summary.universe["symbols_loaded"] += symbols
            # Not in rejects_by_reason, which counts lines (it adds up to `rejected`): a document is a file.
            self.summary.warnings += [w for w in (d.warning for d in batch) if w]
            self._commit(
                [],
                [rejects],
                wm,
                [d.manifest_row for d in batch],
                universe=memberships,
                # Each document's earlier reject, if any (this scope's or another's), describes an older version.
                reread=[(d.file.rel, 0) for d in batch],
            )
        self.progress.advance(len(batch), sum(d.manifest_row["size"] for d in batch), 0, symbols)

    @contextmanager
    def _counted_if_committed(self) -> Iterator[None]:
        """Counts added inside stay only if the commit made inside reached the database.

        A commit that did not is not counted: a failed run's etl_runs row says what its tables hold. One
        the database took before the run was stopped (an interrupt as COMMIT returned, or during the
        promote) keeps them: the row's ``commits``, set in the commit's transaction, is the truth; a
        lost connection has no answer, and no row to write either.
        """
        kept = {k: dataclasses.replace(c) for k, c in self.summary.kinds.items()}
        kept_reasons, kept_universe = self.summary.reasons.copy(), self.summary.universe.copy()
        try:
            yield
        except BaseException:
            try:
                took = self.target.committed_seq(self.summary.run_id) >= self.seq
            except Exception:  # noqa: BLE001 - the run is failing already; its own error is reported
                took = False
            if took:
                self.summary.commits = self.seq
            else:
                self.summary.kinds, self.summary.reasons, self.summary.universe = kept, kept_reasons, kept_universe
            raise

    # -- the commit protocol ------------------------------------------------------------------------
    def _commit(
        self,
        deltas: list[dedup.PartitionDelta],
        rejects: Sequence[_Rejects],
        wm: pl.DataFrame | None,
        manifest_rows: list[dict[str, Any]],
        universe: Sequence[tuple[date, pl.DataFrame]] = (),  # market_universe rows replacing each day's
        # (file, line): files read again from that line on (0: the start, a rewritten JSONL file, a changed
        # document; else a last line read again now that the file has grown)
        reread: Sequence[tuple[str, int]] = (),
        flagged: Sequence[str] = (),  # markets whose rows _reflag checked
    ) -> None:
        """Stage, load and record one unit (see staging.manifest for the order and recovery)."""
        self.seq += 1
        # Markets whose ticks or snapshots this commit writes (or checked) now carry the run's holiday list.
        flags = sorted(
            m for m in {d.market for d in deltas if d.table in TABLE_OF.values()} | set(flagged)
            if self._flag_lists.get(m) != self.ctx.holidays
        )
        commit = manifest.PendingCommit(self.summary.run_id, self.seq)
        writes: list[tuple[Table, str, date, pl.DataFrame]] = []
        for d in deltas:
            content = d.rewrite if d.rewrite is not None else d.inserts
            if content.height or d.rewrite is not None:
                writes.append((d.table, d.market, d.day, content))
            commit.obsolete += [p.relative_to(self.staging).as_posix() for p in d.obsolete]
        uni_markets: list[tuple[str, date, pl.DataFrame]] = []
        for day, rows in universe:
            markets = set(rows["market"].to_list()) | self._staged_universe_markets(day)
            for m in sorted(markets):
                part = rows.filter(pl.col("market") == m)
                pdir = partition_dir(self.staging, MARKET_UNIVERSE, m, day)
                commit.obsolete += [p.relative_to(self.staging).as_posix() for p in sorted(pdir.glob("part-*.parquet"))]
                if part.height:
                    writes.append((MARKET_UNIVERSE, m, day, part))
                uni_markets.append((m, day, part))
        commit.written = [
            (partition_dir(self.staging, t, m, d) / part_name(commit.run_id, commit.seq))
            .relative_to(self.staging)
            .as_posix()
            for t, m, d, _ in writes
        ]
        with _timed(self.summary, "stage"):
            manifest.begin_pending(self.staging, self.opts.scope, commit)
        _crash_point("pending_begun", self.seq)
        # The parts and the pending manifest are written on a thread of their own while the database
        # loads the same rows (both release the GIL); the transaction commits only once they are
        # durable, so every crash point leaves what the serial order left.
        staged = self._stager.submit(self._stage, commit, writes, manifest_rows)
        with _timed(self.summary, "load"):
            try:
                self._load(deltas, rejects, wm, uni_markets, use_append=True, reread=reread, flags=flags,
                           staged=staged.result)
            except adbc_driver_manager.Error as exc:
                if not is_key_conflict(exc):
                    raise
                self.summary.warnings.append(
                    "the database already held rows this staging directory did not know (was it reset, or did "
                    "the security master move a symbol to another market?): upserting instead"
                )
                self._load(deltas, rejects, wm, uni_markets, use_append=False, reread=reread, flags=flags,
                           staged=staged.result)
            finally:
                staged.exception()  # never leave the thread writing after this commit has failed
        self._flag_lists.update(dict.fromkeys(flags, self.ctx.holidays))
        _crash_point("db_committed", self.seq)
        with _timed(self.summary, "stage"):
            manifest.promote(self.staging, self.opts.scope, commit, lambda step: _crash_point(step, commit.seq))
        self.summary.commits = self.seq
        _crash_point("promoted", self.seq)

    def _stage(self, commit: manifest.PendingCommit, writes: list[tuple[Table, str, date, pl.DataFrame]],
               manifest_rows: list[dict[str, Any]]) -> None:
        """Write a commit's parts, then its pending manifest (step 1 of the commit protocol)."""
        with _timed(self.summary, "stage"):
            for t, m, d, content in writes:
                write_part(
                    self.staging, t, m, d, content, commit.run_id, commit.seq, spill_dir(self.staging, self.opts.scope)
                )
            _crash_point("parts_written", commit.seq)
            new_rows = pl.DataFrame(
                [{**row, "commit_seq": commit.seq} for row in manifest_rows], schema=manifest.MANIFEST_SCHEMA
            )
            self.manifest = pl.concat(
                [self.manifest.join(new_rows.select("path"), on="path", how="anti"), new_rows]
            ).sort("path")
            manifest.finish_pending(self.staging, self.opts.scope, commit, self.manifest)
            _crash_point("pending_written", commit.seq)

    def _load(self, deltas, rejects, wm, uni_markets, use_append: bool, reread: Sequence[tuple[str, int]], flags: list[str], staged) -> None:  # type: ignore[no-untyped-def]
        """One database transaction; ``staged()`` waits for the staging step, just before COMMIT."""
        tables = defaultdict(Counter)
        with self.target.transaction():
            for d in deltas:
                c = tables[d.table.name]
                if use_append:
                    c["inserted"] += self.target.append(d.table, d.inserts)
                else:
                    ins, upd = self.target.upsert(d.table, d.inserts)
                    c["inserted"] += ins
                    c["updated"] += upd
                self.target.delete_keys(d.table, d.deletes)
                ins, upd = self.target.upsert(d.table, d.updates)
                c["inserted"] += ins
                c["updated"] += upd
            for m, day, part in uni_markets:
                before, after = self.target.replace_partition(MARKET_UNIVERSE, m, day, part)
                tables[MARKET_UNIVERSE.name]["inserted"] += after
                tables[MARKET_UNIVERSE.name]["deleted"] += before
            for rel, line in reread:  # its earlier rejects there describe content that is no longer there
                self.target.forget_rejects(rel, line)
            # Rejects carry no market: the run of every other market records the same lines too.
            for part in (part for r in rejects for part in r.batches()):
                self.target.write_rejects(part, known_new=use_append and self.opts.market is None)
            if wm is not None:
                self.target.advance_watermark(wm)
            self.target.record_flag_lists(flags, self.ctx.holidays, self.summary.run_id, self.ctx.etl_timestamp)
            self.target.mark_commit(self.summary.run_id, self.seq, self.summary.counts)
            staged()
        for name, c in tables.items():
            self.summary.tables[name].update(c)

    def _staged_documents(self) -> dict[date, set[str]]:
        """The documents whose rows this scope's staged ``market_universe`` partitions hold, by date.

        Scopes write one another's partitions (an all-markets run every market's), so neither this
        scope's manifest nor any other says what they hold; the staged rows do. (A few thousand rows a
        date, read only when documents changed.)"""
        out: dict[date, set[str]] = defaultdict(set)
        for market, day, d in partitions(self.staging, MARKET_UNIVERSE):
            if self.opts.market in (None, market):
                out[day] |= set(read_parts(part_files(d), MARKET_UNIVERSE, ["source_file"])["source_file"].to_list())
        return out

    def _staged_universe_markets(self, day: date) -> set[str]:
        return {
            m for m in markets(self.staging, MARKET_UNIVERSE)
            if self.opts.market in (None, m) and partition_dir(self.staging, MARKET_UNIVERSE, m, day).exists()
        }
