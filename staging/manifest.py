"""The Parquet manifest: how far each archive file has been consumed, per market scope.

Layout: ``<staging>/_manifest/scope=<scope>/files.parquet`` (the committed state) and, while a commit
is in flight, ``pending-<run>-<seq>/`` holding the next ``files.parquet`` and ``txn.json`` (the staged
part files the commit writes and the ones it makes obsolete).

Commit order (the database decides): 1. record the commit's planned parts (``txn.json``), write
the parts, write the pending manifest; 2. commit the
database transaction, which records ``(run, seq)`` in ``etl_runs``; 3. promote the pending manifest
and delete obsolete parts. ``recover`` finishes or undoes an interrupted commit: a pending commit the
database knows is promoted (whatever of the promote is left), any other is rolled back.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import polars as pl

from staging.layout import StagingError, read_staged, write_atomic

MANIFEST_SCHEMA = pl.Schema(
    {
        "path": pl.String(),
        "kind": pl.String(),
        "size": pl.Int64(),
        "mtime_ns": pl.Int64(),
        "consumed_bytes": pl.Int64(),
        "lines_consumed": pl.Int64(),
        # The file ended without a newline when read, after the writer had moved on: that last line was
        # rejected as truncated, and consumed_bytes / lines_consumed stop before it, so that it is read
        # again, whole, if the file grows. Null (false) in manifests written before this column existed.
        "tail_read": pl.Boolean(),
        "fp_len": pl.Int64(),
        "fp_hash": pl.String(),
        # The last fp_len bytes before consumed_bytes: with the head's, what tells an append from a rewrite.
        "end_fp_len": pl.Int64(),
        "end_fp_hash": pl.String(),
        "content_hash": pl.String(),
        # A universe document's date and when it was written (its generated_at, else its file name's
        # date at 00:00 KST), as last read; a rejected version keeps its last good one's. Which document
        # names a date, and which of them is the newest, without reading them all again. Null for JSONL
        # files, and in manifests written before these columns existed.
        "doc_date": pl.Date(),
        "doc_written_at": pl.Datetime("us", "UTC"),
        "run_id": pl.String(),
        "commit_seq": pl.Int64(),
    }
)


def scope_dir(staging: Path, scope: str) -> Path:
    return staging / "_manifest" / f"scope={scope}"


def present(staging: Path) -> bool:
    """Whether ``staging`` has a manifest folder: a staging directory ``observer etl`` has written."""
    return (staging / "_manifest").is_dir()


def scopes(staging: Path) -> list[str]:
    """The scopes that have a manifest folder (committed or pending) in ``staging``."""
    base = staging / "_manifest"
    return sorted(d.name.removeprefix("scope=") for d in base.glob("scope=*") if d.is_dir())


def load(staging: Path, scope: str) -> pl.DataFrame:
    path = scope_dir(staging, scope) / "files.parquet"
    if not path.exists():
        return pl.DataFrame(schema=MANIFEST_SCHEMA)
    files = read_staged(path)
    if "path" in files.columns and "kind" in files.columns and "doc_date" not in files.columns:
        # Written before documents' dates were kept: each universe document is read once more (its
        # content hash forgotten), so that the run knows every document naming a date, not only the
        # ones that change from now on.
        files = files.with_columns(
            content_hash=pl.when(pl.col("kind") == "universe").then(None).otherwise(pl.col("content_hash"))
        )
    if "path" in files.columns:  # columns added since (tail_read, end_fp_*): null in a staging written before
        files = files.with_columns(pl.lit(None, t).alias(c) for c, t in MANIFEST_SCHEMA.items() if c not in files.columns)
    try:
        return files.select(MANIFEST_SCHEMA.names()).cast(dict(MANIFEST_SCHEMA))
    except pl.exceptions.PolarsError as exc:
        raise StagingError(f"{path} is not a manifest ({str(exc).splitlines()[0]})") from None


def documents(staging: Path) -> pl.DataFrame:
    """Every scope's manifest rows of universe documents, with a ``scope`` column. Scopes write one
    another's dates (an all-markets run every market's, a market's run that market's of the all-markets
    scope), so what one scope last read is not all that its partitions may hold."""
    rows = [load(staging, s).filter(pl.col("kind") == "universe").with_columns(scope=pl.lit(s)) for s in scopes(staging)]
    return pl.concat(rows) if rows else pl.DataFrame(schema={**MANIFEST_SCHEMA, "scope": pl.String()})


def newest_commit(files: pl.DataFrame) -> tuple[str, int] | None:
    """The (run, seq) of the newest commit a scope's manifest records: the one its database must have
    (run ids begin with their start time, so they sort as the runs came)."""
    if files.height == 0:
        return None
    run_id, seq = files.select("run_id", "commit_seq").sort("run_id", "commit_seq").row(-1)
    if run_id is None or seq is None:
        raise StagingError("a manifest row names no commit (run_id, commit_seq): it is not a manifest observer-etl wrote")
    return str(run_id), int(seq)


def pending(staging: Path, scope: str) -> list[Path]:
    """The scope's interrupted commits (``pending-<run>-<seq>`` folders), oldest first."""
    return sorted(p for p in scope_dir(staging, scope).glob("pending-*") if p.is_dir())


@dataclass
class PendingCommit:
    run_id: str
    seq: int
    written: list[str] = field(default_factory=list)  # staged parts, relative to staging
    obsolete: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"pending-{self.run_id}-{self.seq:06d}"


def begin_pending(staging: Path, scope: str, commit: PendingCommit) -> None:
    """Step 1a, before any part is written: record which parts this commit will write."""
    d = scope_dir(staging, scope) / commit.name
    d.mkdir(parents=True, exist_ok=True)
    txn = {"run_id": commit.run_id, "seq": commit.seq, "written": commit.written, "obsolete": commit.obsolete}
    tmp = d / ".txn.json.tmp"
    tmp.write_text(json.dumps(txn))
    os.replace(tmp, d / "txn.json")


def finish_pending(staging: Path, scope: str, commit: PendingCommit, files: pl.DataFrame) -> None:
    """Step 1b, after the parts: the manifest as it will be once the database has committed."""
    d = scope_dir(staging, scope) / commit.name
    write_atomic(files.select(MANIFEST_SCHEMA.names()).cast(dict(MANIFEST_SCHEMA)), d / "files.parquet")


def promote(
    staging: Path, scope: str, commit: PendingCommit, checkpoint: Callable[[str], None] = lambda step: None
) -> None:
    """Step 3: the pending manifest becomes the manifest; obsolete parts go. Idempotent: ``recover``
    finishes a promote that was killed half-way (``checkpoint`` names each step, for the kill tests)."""
    d = scope_dir(staging, scope)
    pend = d / commit.name
    try:
        os.replace(pend / "files.parquet", d / "files.parquet")
    except FileNotFoundError:  # moved by the promote that was interrupted: it is in place already
        pass
    checkpoint("manifest_promoted")
    for rel in commit.obsolete:
        (staging / rel).unlink(missing_ok=True)
    checkpoint("obsolete_removed")
    shutil.rmtree(pend, ignore_errors=True)


def rollback(staging: Path, scope: str, commit: PendingCommit) -> None:
    for rel in commit.written:
        (staging / rel).unlink(missing_ok=True)
    shutil.rmtree(scope_dir(staging, scope) / commit.name, ignore_errors=True)


def recover(staging: Path, scope: str, is_committed: Callable[[str, int], bool]) -> list[str]:
    """Finish or undo interrupted commits of this scope; returns what was done, for the log."""
    d = scope_dir(staging, scope)
    done: list[str] = []
    if not d.is_dir():
        return done
    for pend in pending(staging, scope):
        txn_path = pend / "txn.json"
        try:
            txn = json.loads(txn_path.read_text()) if txn_path.exists() else None
        except ValueError as exc:  # written whole and renamed into place: damaged outside a run
            raise StagingError(f"{txn_path} cannot be read ({exc})") from None
        if not txn:
            # Either step 1 had not named its parts yet, or a promote was removing the directory (its
            # txn.json already gone): only the database can tell which.
            committed = _committed_by_name(pend.name, is_committed)
            if not committed:  # remove the parts named after its (run, seq)
                _remove_unlisted_parts(staging, pend.name)
            shutil.rmtree(pend, ignore_errors=True)
            done.append(f"{'completed' if committed else 'rolled back'} {pend.name}")
            continue
        commit = PendingCommit(txn["run_id"], txn["seq"], txn["written"], txn["obsolete"])
        # The database decides. A commit it has is finished even if its pending manifest is gone (a
        # promote killed after moving it); one it has not is undone.
        if is_committed(commit.run_id, commit.seq):
            promote(staging, scope, commit)
            done.append(f"completed {pend.name}")
        else:
            rollback(staging, scope, commit)
            done.append(f"rolled back {pend.name}")
    return done


def _committed_by_name(pending_name: str, is_committed: Callable[[str, int], bool]) -> bool:
    """Whether the database has the commit a ``pending-<run>-<seq>`` directory is named after."""
    run_id, _, seq = pending_name.removeprefix("pending-").rpartition("-")
    return bool(run_id) and seq.isdigit() and is_committed(run_id, int(seq))


def _remove_unlisted_parts(staging: Path, pending_name: str) -> None:
    """A pending dir without txn.json: remove parts named after its (run, seq)."""
    stem = pending_name.removeprefix("pending-")
    for p in staging.glob(f"*/market=*/trade_date=*/part-{stem}.parquet"):
        p.unlink(missing_ok=True)
