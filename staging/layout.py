"""The staged Parquet layout: ``<staging>/<table>/market=<m>/trade_date=<YYYY-MM-DD>/part-<run>-<seq>.parquet``.

Hive-partitioned so DuckDB's ``read_parquet(..., hive_partitioning=true)`` and ``pl.scan_parquet`` read
it directly; partition columns live in the path, not in the files. Every file is written under a
temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Sequence

import polars as pl

from schemas.tables import Table



class StagingError(Exception):
    """A staged file that cannot be read back (damaged, emptied or removed outside a run); names the file."""


def read_staged(path: Path, columns: list[str] | None = None) -> pl.DataFrame:
    """One staged Parquet file (a part or a manifest); a damaged or missing one raises StagingError."""
    try:
        return pl.read_parquet(path, columns=columns, hive_partitioning=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        reason = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise StagingError(f"{path} cannot be read ({reason})") from None


def unwritable(d: Path) -> str | None:
    """Why files cannot be written under directory ``d`` (created if missing), or None if they can."""
    if d.exists() and not d.is_dir():
        return "it is a file, not a directory"
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def missing_dirs(d: Path) -> list[Path]:
    """The directories ``unwritable(d)`` would create, deepest first (for ``remove_if_empty``): every
    prefix of the path as given that does not exist yet, resolved as creating it would (``new/../old``
    makes ``new`` only; ``old`` may be the user's)."""
    p = d.absolute()
    chain = [Path(os.path.realpath(q)) for q in [*reversed(p.parents), p]]
    return list(reversed(dict.fromkeys(q for q in chain if not os.path.lexists(q))))


def remove_if_empty(dirs: list[Path]) -> None:
    """Remove what a refused run created (``missing_dirs``) as long as nothing was written into it."""
    for d in dirs:
        try:
            d.rmdir()
        except (FileNotFoundError, NotADirectoryError):  # never made (``new/../a_file/sub``), or gone
            continue
        except OSError:  # not empty (another run wrote into it meanwhile): nor are the folders above it
            return


def market_dir(staging: Path, table: Table, market: str) -> Path:
    return staging / table.name / f"market={market}"


def partition_dir(staging: Path, table: Table, market: str, day: date) -> Path:
    return market_dir(staging, table, market) / f"trade_date={day.isoformat()}"


def spill_dir(staging: Path, scope: str) -> Path:
    """Where a run of ``scope`` spills big reject batches until they are loaded; never a record of anything
    (a run clears its scope's at its start and end, so a killed run's leftovers go with the next run)."""
    return staging / "_spill" / f"scope={scope}"


def _entries(directory: Path, prefix: str, dirs_only: bool) -> list[Path]:
    """The entries of ``directory`` whose names start with ``prefix`` (none if it does not exist).

    A folder that exists but cannot be listed raises its OSError: glob reads it as empty, and a staged
    partition read as empty is one whose rows the next commit would insert again (and a count that
    skipped it would look exact)."""
    try:
        with os.scandir(directory) as it:
            return sorted(Path(e.path) for e in it if e.name.startswith(prefix) and (not dirs_only or e.is_dir()))
    except FileNotFoundError:
        return []


def part_files(directory: Path) -> list[Path]:
    try:
        return [p for p in _entries(directory, "part-", False) if p.name.endswith(".parquet")]
    except NotADirectoryError:  # (as glob: a file where a partition folder would be holds no parts)
        return []


def markets(staging: Path, table: Table) -> list[str]:
    """The markets ``table`` has a folder of in ``staging``, in name order."""
    return [d.name.removeprefix("market=") for d in _entries(staging / table.name, "market=", True)]


def partitions(staging: Path, table: Table, market: str | None = None) -> list[tuple[str, date, Path]]:
    """Every (market, trade date) partition of ``table`` (of ``market``, if given) that holds parts, in path order."""
    return [
        (m, date.fromisoformat(d.name.removeprefix("trade_date=")), d)
        for m in ([market] if market else markets(staging, table))
        for d in _entries(market_dir(staging, table, m), "trade_date=", False)
        if part_files(d)
    ]


def with_partition_columns(df: pl.DataFrame, table: Table, market: str, day: date) -> pl.DataFrame:
    """A partition's file rows with the columns that live in its path."""
    return df.with_columns(pl.lit(market).alias(table.partition_by[0]), pl.lit(day).alias(table.partition_by[1]))


def part_name(run_id: str, seq: int) -> str:
    return f"part-{run_id}-{seq:06d}.parquet"


PART_INDEX = "_part"


def read_parts(
    files: list[Path], table: Table, columns: list[str] | None = None, part_index: bool = False
) -> pl.DataFrame:
    """Rows of the given part files (file columns only); with ``part_index``, each row's index in ``files``."""
    cols = columns if columns is not None else table.file_columns
    if not files:
        return pl.DataFrame(schema={**table.polars_schema(cols), **({PART_INDEX: pl.UInt32} if part_index else {})})
    if not part_index:
        try:
            return pl.read_parquet(files, columns=cols, hive_partitioning=False)
        except (pl.exceptions.PolarsError, OSError):
            for f in files:  # Polars' error does not say which file: find it (raises StagingError)
                read_staged(f, cols)
            raise
    return pl.concat(
        [read_staged(f, cols).with_columns(pl.lit(i, pl.UInt32).alias(PART_INDEX)) for i, f in enumerate(files)]
    )


def write_atomic(df: pl.DataFrame, path: Path, tmp_dir: Path | None = None) -> None:
    """Write a Parquet file under a temporary name, fsync, and rename it into place; the temporary file
    in ``tmp_dir`` (on the same file system) if given, else beside ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if tmp_dir is None:
        tmp = path.with_name(f".{path.name}.tmp")
    else:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f".{'.'.join(path.parts[-4:])}.tmp"  # table, market, date and part: unique in a run
    df.write_parquet(tmp, compression="zstd", statistics=True)
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_part(
    staging: Path, table: Table, market: str, day: date, df: pl.DataFrame, run_id: str, seq: int, tmp_dir: Path
) -> Path:
    """A commit's part, written in ``tmp_dir`` (the run's spill directory) and renamed into its partition:
    a reader of the table's directory tree never meets a file being written (Polars' hive scan of a
    directory fails on a file of another extension), nor one a killed run left half written."""
    path = partition_dir(staging, table, market, day) / part_name(run_id, seq)
    write_atomic(df.select(table.file_columns), path, tmp_dir)
    return path


def remove_stray_temporaries(staging: Path, tables: Sequence[Table], market: str | None) -> None:
    """Delete the temporary files that runs before 2026-11-29 wrote beside their parts and left behind
    when killed, in ``market``'s partitions (every market's: None). Only a run that holds the scope's
    lock calls this, so no run is writing them."""
    for table in tables:
        for p in (staging / table.name).glob(f"market={market or '*'}/trade_date=*/.*.tmp"):
            p.unlink(missing_ok=True)
