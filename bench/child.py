"""One measurement, run in a process of its own so that its peak RSS is its own.

``python -m bench.child TASK --args-json '{...}'`` prints one JSON object on stdout: ``seconds`` (the
measured part only: imports, file discovery and building the input are outside it) plus what the
task counted. The harness (``bench.harness``) starts one such process per measurement and reads
the child's peak RSS from ``os.wait4``. Each task can also be run by hand with the same arguments:
that is the command stored next to every number in results.json.

Tasks:
  parse-floor   Polars parsing the archive's JSONL with the explicit record schemas, and nothing else.
  ingest-floor  ADBC bulk ingest (``adbc_ingest``) of a run's clean rows into tables with no key or index.
  per-record    The design document's per-record loop: json.loads, SELECT the key, INSERT or UPDATE,
                one row at a time through Python's standard drivers (sqlite3 / psycopg), commit per 10,000.
  dlt           dlt's merge load (delete-insert, primary key = observer-etl's idempotency key).
  units         observer-etl with its unit size, lookahead and SQLite cache set (the memory study in
                bench/HISTORY.md), with the process's peak RSS (VmHWM) in its result.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import io
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

# The design document's batch size (section 8.1): the per-record baseline commits every 10,000 records.
DESIGN_BATCH = 10_000


def jsonl_files(archive: Path) -> list[tuple[str, Path, int]]:
    """(kind, path, size) of every JSONL data file (scalp ticks, swing snapshots), as the ETL sees them."""
    from engine import scan
    from schemas.records import Kind

    files, _ = scan.discover(archive)
    return [(f.kind.value, f.path, f.size) for f in files if f.kind in (Kind.SCALP, Kind.SWING)]


def complete_lines(path: Path, limit_bytes: int | None = None) -> bytes:
    """The file's bytes up to its last newline (optionally only the first ``limit_bytes``, on a line end)."""
    with path.open("rb") as fh:
        data = fh.read() if limit_bytes is None else fh.read(limit_bytes)
    return data[: data.rfind(b"\n") + 1]


# -- floors ---------------------------------------------------------------------------------------------
def _without_bad_lines(f: Any) -> bytes:
    """The file's complete lines minus those the engine's decoder rejects, cut out as the engine does."""
    import numpy as np

    from engine import scan

    rng = scan.read_new_bytes(f, 0, 1, True)
    bad = scan.decode(rng).rejects["line_idx"].to_numpy()
    starts = np.concatenate(([0], rng.line_ends[:-1] + 1)).astype(np.int64)
    keep = np.setdiff1d(np.arange(rng.n_lines), bad)
    return scan._without(rng.data, starts, rng.line_ends, bad, keep)[0]


def parse_floor(args: dict[str, Any]) -> dict[str, Any]:
    """Read each file and ``pl.read_ndjson(bytes, schema=RECORD_SCHEMAS[kind])``: nothing else.

    One invalid line makes ``read_ndjson`` fail the whole file, and finding that line is the ETL's
    work, not the floor's: for such a file the clock is stopped, its bad lines are taken out (with the
    engine's own decoder), and only the parse of the remaining lines is timed (``cleaned_files``).
    """
    import polars as pl

    from engine import scan
    from schemas.records import RECORD_SCHEMAS, Kind

    archive = Path(args["archive"])
    files = jsonl_files(archive)
    found = {f.path: f for f in scan.discover(archive)[0]}
    rows = nbytes = cleaned = 0
    seconds = 0.0
    for kind, path, _ in files:
        schema = RECORD_SCHEMAS[Kind(kind)]
        t0 = time.perf_counter()
        data = complete_lines(path)
        seconds += time.perf_counter() - t0  # the read counts
        t0 = time.perf_counter()
        try:
            df = pl.read_ndjson(io.BytesIO(data), schema=schema)
            seconds += time.perf_counter() - t0
        except Exception:  # noqa: BLE001 - the failed parse and the cleaning do not count (until 2026-11-29
            # they did: a file with a bad line was parsed twice on the clock, 13-24 % more floor)
            clean = _without_bad_lines(found[path])
            cleaned += 1
            t0 = time.perf_counter()
            df = pl.read_ndjson(io.BytesIO(clean), schema=schema) if clean else pl.DataFrame(schema=schema)
            seconds += time.perf_counter() - t0
        nbytes += len(data)
        rows += df.height
        del df
    return {"seconds": seconds, "files": len(files), "rows": rows, "bytes": nbytes, "cleaned_files": cleaned}


def _staged_arrow(staging: Path, dialect: str) -> Iterator[tuple[str, Any]]:
    """The clean rows a run staged (scalp ticks, swing snapshots), one partition at a time, as the engine
    sends them to ``dialect``.

    The same wire format as the engine's ingest (``Table.wire_table``: SQLite gets dates and times as text,
    formatted by Polars), so the floor is the fastest ingest of these rows, not the driver's default one.
    A partition at a time because a 50M-line archive's rows (some 30 GB as Arrow) never fit at once.
    """
    from schemas.tables import SCALP_TICKS, SWING_SNAPSHOTS
    from staging.layout import part_files, partitions, read_parts, with_partition_columns

    for table in (SCALP_TICKS, SWING_SNAPSHOTS):
        for market, day, pdir in partitions(staging, table):
            df = with_partition_columns(read_parts(part_files(pdir), table), table, market, day)
            yield table.name, table.wire_table(df.select(table.column_names), dialect)  # type: ignore[arg-type]


FLOOR_BATCH_BYTES = 1 << 30  # Arrow rows read ahead, then ingested back to back


def ingest_floor(args: dict[str, Any]) -> dict[str, Any]:
    """``adbc_ingest`` of the staged rows into a fresh database: no key, no index, one transaction.

    Only BEGIN, the ingest calls and COMMIT are timed. Partitions are read (off the clock) up to
    FLOOR_BATCH_BYTES ahead and then ingested back to back, so that the timed ingest is not interleaved
    with Parquet reads at every partition, yet a 50M-line archive never has to fit in memory.

    A probe, not the floor: ``key`` (a list of column names) creates the tables first as the engine
    does (``Table.create_ddl``: the primary key, SQLite's ``WITHOUT ROWID``), with that key order for
    scalp_ticks, to measure what a key order costs the same ingest.
    """
    target = args["target"]
    dialect = "sqlite" if target.startswith("sqlite:") else "postgresql"
    # Autocommit plus an explicit transaction, as the engine's Target does.
    if dialect == "sqlite":
        import adbc_driver_sqlite.dbapi as driver

        conn = driver.connect(target.split(":///", 1)[1], autocommit=True)
        cur = conn.cursor()
        # The engine's pragmas for a first load into empty tables (engine.load.Target._journal).
        for pragma in ("PRAGMA journal_mode=DELETE", "PRAGMA synchronous=FULL"):
            cur.execute(pragma)
            cur.fetchall()
        begin = "BEGIN IMMEDIATE"
    else:
        import adbc_driver_postgresql.dbapi as driver

        conn = driver.connect(target, autocommit=True)
        cur = conn.cursor()
        begin = "BEGIN"
    created: list[str] = []
    if "key" in args:
        from schemas.tables import SCALP_TICKS, SWING_SNAPSHOTS

        for table in (SCALP_TICKS, SWING_SNAPSHOTS):
            keyed = dataclasses.replace(table, key=tuple(args["key"])) if table is SCALP_TICKS else table
            cur.execute(keyed.create_ddl(dialect).replace(f"TABLE IF NOT EXISTS {table.name}", f"TABLE floor_{table.name}"))
            created.append(table.name)
    rows = calls = 0
    t0 = time.perf_counter()
    cur.execute(begin)
    seconds = time.perf_counter() - t0
    batch: list[tuple[str, Any]] = []
    pending = 0  # Arrow bytes in ``batch``

    def ingest() -> float:
        """The batch's partitions back to back, as one bulk ingest would send them: the clock runs here only."""
        t = time.perf_counter()
        for name, tbl in batch:
            cur.adbc_ingest(f"floor_{name}", tbl, mode="append" if name in created else "create")
            if name not in created:
                created.append(name)
        batch.clear()
        return time.perf_counter() - t

    for name, tbl in _staged_arrow(Path(args["staging"]), dialect):
        batch.append((name, tbl))
        rows += tbl.num_rows
        calls += 1
        pending += tbl.nbytes
        if pending >= FLOOR_BATCH_BYTES:
            seconds += ingest()
            pending = 0
    seconds += ingest()
    t0 = time.perf_counter()
    cur.execute("COMMIT")
    seconds += time.perf_counter() - t0
    cur.close()
    conn.close()
    return {"seconds": seconds, "rows": rows, "tables": created, "partitions": calls}


# -- baselines: the same sample of lines --------------------------------------------------------------
def sample_lines(archive: Path, fraction: float, cap: int) -> Iterator[tuple[str, str, bytes]]:
    """(kind, rel path, line) for the first ``fraction`` of every data file, at most ``cap`` lines in all.

    Taking the same share from the head of every file keeps the sample's mix of days, kinds, shapes and
    dirt close to the whole archive's.
    """
    n = 0
    for kind, path, size in jsonl_files(archive):
        data = complete_lines(path, max(1, math.ceil(size * fraction)))
        rel = path.relative_to(archive).as_posix()
        for line in data.splitlines():
            if n >= cap:
                return
            n += 1
            yield kind, rel, line


def _num(d: Any, *keys: str) -> Any:
    if not isinstance(d, dict):
        return None
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return None


_PR_COLUMNS = (
    "session_id", "symbol", "event_time", "price", "day_open", "day_high", "day_low", "change_rate",
    "acc_volume", "acc_trade_value", "bid_price", "ask_price", "source", "source_file", "quality_flag",
)


def _per_record_row(kind: str, rec: dict[str, Any], rel: str) -> tuple[Any, ...]:
    """The design document's record: key (session_id, symbol, event_time), payload flattened."""
    if kind == "scalp":
        price, vol, ba = rec.get("price"), rec.get("volume"), rec.get("bid_ask")
        return (
            rec.get("session_id"), rec.get("symbol"), rec.get("timestamp"), _num(price, "current", "close"),
            _num(price, "open"), _num(price, "high"), _num(price, "low"), _num(price, "change_rate"),
            _num(vol, "accumulated"), _num(vol, "trade_value"), _num(ba, "bid_price"), _num(ba, "ask_price"),
            rec.get("source"), rel, "normal",
        )
    price = rec.get("price")
    return (
        rec.get("session"), rec.get("symbol"), rec.get("ts"), _num(price, "close"), _num(price, "open"),
        _num(price, "high"), _num(price, "low"), None, rec.get("volume"), None, rec.get("bid_price"),
        rec.get("ask_price"), rec.get("source"), rel, "normal",
    )


def _scalar(v: Any) -> Any:
    return v if v is None or isinstance(v, (int, float, str)) else json.dumps(v)


def per_record(args: dict[str, Any]) -> dict[str, Any]:
    """For each line: json.loads, SELECT the key, INSERT or UPDATE; commit every 10,000 records."""
    archive, target = Path(args["archive"]), args["target"]
    lines = list(sample_lines(archive, args["fraction"], args["max_lines"]))
    nbytes = sum(len(x[2]) + 1 for x in lines)
    is_sqlite = target.startswith("sqlite:")
    if is_sqlite:
        import sqlite3

        conn: Any = sqlite3.connect(target.split(":///", 1)[1])
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        ph, text, real, bigint = "?", "TEXT", "REAL", "INTEGER"
    else:
        import psycopg

        conn = psycopg.connect(target)
        ph, text, real, bigint = "%s", "TEXT", "DOUBLE PRECISION", "BIGINT"
    types = {c: text for c in _PR_COLUMNS}
    types.update({c: bigint for c in ("price", "day_open", "day_high", "day_low", "acc_volume", "acc_trade_value",
                                      "bid_price", "ask_price")})
    types["change_rate"] = real
    for table in ("scalp_ticks", "swing_snapshots"):
        cols = ", ".join(f"{c} {types[c]}" for c in _PR_COLUMNS)
        conn.execute(f"CREATE TABLE {table} ({cols}, PRIMARY KEY (session_id, symbol, event_time))")
    conn.commit()
    key_where = f"session_id = {ph} AND symbol = {ph} AND event_time = {ph}"
    values = ", ".join([ph] * len(_PR_COLUMNS))
    sets = ", ".join(f"{c} = {ph}" for c in _PR_COLUMNS[3:])
    sql = {
        t: (
            f"SELECT 1 FROM {t} WHERE {key_where}",
            f"INSERT INTO {t} ({', '.join(_PR_COLUMNS)}) VALUES ({values})",
            f"UPDATE {t} SET {sets} WHERE {key_where}",
        )
        for t in ("scalp_ticks", "swing_snapshots")
    }
    inserted = updated = skipped = 0
    cur = conn.cursor()
    t0 = time.perf_counter()
    for i, (kind, rel, line) in enumerate(lines, 1):
        try:
            rec = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if not isinstance(rec, dict):
            skipped += 1
            continue
        row = tuple(_scalar(v) for v in _per_record_row(kind, rec, rel))
        if row[0] is None or row[1] is None or row[2] is None:
            skipped += 1  # the design key cannot be formed
            continue
        select, insert, update = sql["scalp_ticks" if kind == "scalp" else "swing_snapshots"]
        cur.execute(select, row[:3])
        if cur.fetchone() is None:
            cur.execute(insert, row)
            inserted += 1
        else:
            cur.execute(update, row[3:] + row[:3])
            updated += 1
        if i % DESIGN_BATCH == 0:
            conn.commit()
    conn.commit()
    seconds = time.perf_counter() - t0
    conn.close()
    return {
        "seconds": seconds, "lines": len(lines), "bytes": nbytes, "inserted": inserted, "updated": updated,
        "skipped": skipped, "driver": "sqlite3" if is_sqlite else f"psycopg {sys.modules['psycopg'].__version__}",
    }


def _dlt_rows(lines: list[tuple[str, str, bytes]], kind: str, counter: dict[str, int]) -> Iterator[dict[str, Any]]:
    for k, rel, line in lines:
        if k != kind:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            counter["skipped"] += 1
            continue
        if not isinstance(rec, dict):
            counter["skipped"] += 1
            continue
        if kind == "scalp":
            ts, sym = rec.get("timestamp"), rec.get("symbol")
            price, vol, ba = rec.get("price"), rec.get("volume"), rec.get("bid_ask")
            acc = _num(vol, "accumulated")
            et = rec.get("execution_time")
            if not isinstance(ts, str) or not isinstance(sym, str) or not _is_int(acc) or len(ts) < 19:
                counter["skipped"] += 1
                continue
            yield {
                "symbol": sym, "trade_date": ts[:10], "event_time": str(_scalar(et)) if et is not None else ts[11:19],
                "acc_volume": acc, "recv_time": ts, "price": _scalar(_num(price, "current", "close")),
                "day_open": _scalar(_num(price, "open")), "day_high": _scalar(_num(price, "high")),
                "day_low": _scalar(_num(price, "low")), "change_rate": _scalar(_num(price, "change_rate")),
                "acc_trade_value": _scalar(_num(vol, "trade_value")), "bid_price": _scalar(_num(ba, "bid_price")),
                "ask_price": _scalar(_num(ba, "ask_price")), "source": _scalar(rec.get("source")),
                "session_id": _scalar(rec.get("session_id")), "source_file": rel,
            }
        else:
            ts, sym = rec.get("ts"), rec.get("symbol")
            if not isinstance(ts, str) or not isinstance(sym, str):
                counter["skipped"] += 1
                continue
            price = rec.get("price")
            yield {
                "symbol": sym, "snap_time": ts, "close": _scalar(_num(price, "close")),
                "day_open": _scalar(_num(price, "open")), "day_high": _scalar(_num(price, "high")),
                "day_low": _scalar(_num(price, "low")), "acc_volume": _scalar(rec.get("volume")),
                "session_id": _scalar(rec.get("session")), "source_file": rel,
            }


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# Key columns typed up front: dlt would otherwise detect ISO strings as timestamps and send the odd
# value that does not parse to a variant column, leaving the (NOT NULL) key empty.
_DLT_TICK_COLUMNS = {c: {"data_type": "text"} for c in ("symbol", "trade_date", "event_time", "recv_time")}
_DLT_SNAP_COLUMNS = {c: {"data_type": "text"} for c in ("symbol", "snap_time")}


def dlt_merge(args: dict[str, Any]) -> dict[str, Any]:
    """dlt ``write_disposition='merge'`` (delete-insert) with observer-etl's keys, into a fresh database."""
    import os

    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    import dlt

    archive, target = Path(args["archive"]), args["target"]
    lines = list(sample_lines(archive, args["fraction"], args["max_lines"]))
    nbytes = sum(len(x[2]) + 1 for x in lines)
    counter = {"skipped": 0}
    ticks = dlt.resource(
        _dlt_rows(lines, "scalp", counter), name="scalp_ticks", write_disposition="merge",
        primary_key=("symbol", "trade_date", "event_time", "acc_volume"), columns=_DLT_TICK_COLUMNS,
    )
    snaps = dlt.resource(
        _dlt_rows(lines, "swing", counter), name="swing_snapshots", write_disposition="merge",
        primary_key=("symbol", "snap_time"), columns=_DLT_SNAP_COLUMNS,
    )
    if target.startswith("sqlite:"):
        dest = dlt.destinations.sqlalchemy(credentials=target)
    else:
        # dlt's postgres credentials require a password field; a trust-auth server ignores it.
        from urllib.parse import urlsplit

        parts = urlsplit(target)
        url = target
        if parts.username and parts.password is None:
            url = target.replace(f"//{parts.username}@", f"//{parts.username}:unused@", 1)
        dest = dlt.destinations.postgres(credentials=url)
    pipe = dlt.pipeline(
        pipeline_name=f"bench_{args['tag']}", destination=dest, dataset_name="bench_dlt",
        pipelines_dir=args["pipelines_dir"],
    )
    t0 = time.perf_counter()
    info = pipe.run([ticks, snaps])
    seconds = time.perf_counter() - t0
    rows = 0
    with pipe.sql_client() as client:
        for t in ("scalp_ticks", "swing_snapshots"):
            try:
                with client.execute_query(f"SELECT count(*) FROM {client.make_qualified_table_name(t)}") as c:
                    rows += int(c.fetchall()[0][0])
            except Exception:  # noqa: BLE001 - a kind absent from the sample has no table
                pass
    return {
        "seconds": seconds, "lines": len(lines), "bytes": nbytes, "rows_in_db": rows, "skipped": counter["skipped"],
        "dlt_version": dlt.__version__, "failed_jobs": bool(info.has_failed_jobs),
    }


def units(args: dict[str, Any]) -> dict[str, Any]:
    """observer-etl's ``run_etl`` with its memory knobs set: how the unit size bounds the peak, and at what cost.

    args: archive, work (a fresh directory: SQLite file and staging), and optionally unit_mb (the
    CLI's ``--unit-size`` in MB; default 128), lookahead_mb (new bytes prepared ahead; default one
    unit), chunk_mb (most bytes of a file read at once; default 32, never more than a unit),
    sqlite_cache_mib, keep_freed (false: glibc returns freed memory, unlike the CLI; main() reads it),
    jemalloc_decay_ms (how long Polars' allocator keeps freed pages, 10,000 for the CLI; 0 returns them
    at once: the live memory; main() reads it), and hold_last: that many of the last day's scalp files
    are held back, then added one at a time, each with a run of its own (an hour appended to a staged
    day). Peak RSS is the process's, as always.
    """
    import shutil

    import engine.load
    from engine import pipeline
    from engine.config import RunOptions

    if "lookahead_mb" in args:
        pipeline.LOOKAHEAD_BYTES = int(args["lookahead_mb"] * 2**20)
    if "chunk_mb" in args:
        pipeline.CHUNK_BYTES = int(args["chunk_mb"] * 2**20)
    if "sqlite_cache_mib" in args:
        engine.load.SQLITE_CACHE_KIB = int(args["sqlite_cache_mib"] * 1024)
    work = Path(args["work"])
    source = work / "archive"
    shutil.copytree(args["archive"], source)
    scalp = sorted((source / "assets" / "scalp").glob("*.jsonl"))
    hold = int(args.get("hold_last", 0))
    held = scalp[len(scalp) - hold:] if hold else []
    (work / "held").mkdir()
    for f in held:
        f.rename(work / "held" / f.name)
    opts = RunOptions(
        source=source, target=f"sqlite:///{work / 'db.sqlite'}", staging=work / "staging",
        **({"unit_bytes": int(args["unit_mb"] * 2**20)} if "unit_mb" in args else {}),
    )
    runs = []
    for f in [None, *held]:
        if f is not None:
            (work / "held" / f.name).rename(f)
        t0 = time.perf_counter()
        s = pipeline.run_etl(opts)
        runs.append({"added": f.name if f else None, "seconds": round(time.perf_counter() - t0, 3),
                     "lines_read": s.counts["lines_read"], "commits": s.commits,
                     "stage_seconds": {k: round(v, 3) for k, v in sorted(s.stages.items())}})
    return {"seconds": runs[0]["seconds"], "peak_rss_mb": (_peak_rss_kib() or 0) >> 10, "runs": runs}


TASKS = {
    "parse-floor": parse_floor, "ingest-floor": ingest_floor, "per-record": per_record, "dlt": dlt_merge,
    "units": units,
}

HWM_ENV = "BENCH_HWM_FILE"


def _write_peak_rss() -> None:
    """At exit: this process's own peak RSS (``VmHWM``), into the file the harness named.

    ``ru_maxrss`` of a child is no good here: Linux carries the parent's RSS at fork into it, so a
    small measurement started by a big harness would report the harness's size.
    """
    path = os.environ.get(HWM_ENV)
    if not path:
        return
    kib = _peak_rss_kib()
    if kib is not None:
        with contextlib.suppress(OSError):  # the harness then falls back to ru_maxrss
            Path(path).write_text(str(kib))


def _peak_rss_kib() -> int | None:
    """This process's peak RSS so far (``VmHWM``, KiB), or None where /proc does not say."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def exec_module(argv: list[str]) -> None:
    """``python -m bench.child exec-module MODULE ARGS...``: run MODULE as ``__main__``, peak RSS at exit."""
    import runpy

    atexit.register(_write_peak_rss)
    # The CLI leaves through os._exit (no interpreter teardown), which skips atexit: without this, every
    # `observer etl` run the harness measured fell back to ru_maxrss, the harness's own size at fork
    # included (a run with nothing new on the 1M archive read 252 MB: the harness, not the run).
    real_exit = os._exit

    def exit_with_peak(code: int) -> None:
        _write_peak_rss()
        real_exit(code)

    os._exit = exit_with_peak  # type: ignore[assignment]
    module, rest = argv[0], argv[1:]
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "exec-module":
        exec_module(argv[1:])
        return
    atexit.register(_write_peak_rss)
    ap = argparse.ArgumentParser(prog="python -m bench.child", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("task", choices=sorted(TASKS))
    ap.add_argument("--args-json", required=True, help="the task's arguments as one JSON object")
    ns = ap.parse_args(argv)
    try:
        args = json.loads(ns.args_json)
    except ValueError as exc:
        ap.error(f"--args-json is not JSON: {exc}")
    if not isinstance(args, dict):
        ap.error("--args-json must be one JSON object")
    for key in ("archive", "staging"):  # what a task reads: a typo would measure an empty input
        if key in args and not Path(args[key]).is_dir():
            ap.error(f"{key} {args[key]!r} is not a directory")
    # Every measured process gets the allocator settings the CLI gives a run (exec-module: the CLI sets
    # them itself), floors and baselines included, so that a ratio compares work, not allocators.
    from engine.process import DECAY_MS, tune_for_batch_runs

    tune_for_batch_runs(glibc=args.get("keep_freed", True), decay_ms=int(args.get("jemalloc_decay_ms", DECAY_MS)))
    result = TASKS[ns.task](args)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
