"""The benchmark: observer-etl end to end, its floors and its baselines, on generated archives.

For each archive size (``--lines 1M --lines 10M``) and each target (SQLite, PostgreSQL), every
measurement runs ``--repeat`` times, each in a process of its own (peak RSS from ``os.wait4``):

1. rounds of three runs side by side: ``observer etl ... --json`` end to end into a fresh database with
   a fresh staging directory, and the floors on the same files: Polars parsing the JSONL with the
   explicit schema and nothing else, and ADBC bulk ingest of the same clean rows into tables with no
   key or index; the ratio to the floor is taken within each round (every run that reads the archive
   starts with it read into the page cache: see ``warm``);
2. on the state the last end-to-end run left: a run with nothing new, and an incremental run that adds
   one hour of ticks to a day already staged (hours of a fixed line count on a weekday after the
   archive's last: the first, ``<day>_10.jsonl``, loaded off the clock; then each timed run adds the
   next, ``_11``, ``_12``, ..., so that "one hour" is the same work whatever the archive's size);
3. the baselines, on a sample of the same files: the design document's per-record loop and dlt's
   merge load.

Results go to ``<out>/results.json``, ``results.md`` and ``results.png``; every number comes with the
command that reproduces it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.child import jsonl_files

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO / "bench" / ".cache"
DEFAULT_OUT = REPO / "bench" / "results"
DEFAULT_PG = os.environ.get("OBSERVER_ETL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
TARGETS = ("sqlite", "postgresql")
README_START = "<!-- bench-results:start -->"
README_END = "<!-- bench-results:end -->"

# The targets.
GOAL_SQLITE_LPS = 150_000
GOAL_PG_LPS = 100_000
GOAL_FLOOR_RATIO = 1.5
GOAL_INCR_RATIO = 1.2
GOAL_NOTHING_NEW_S = 1.0
GOAL_RSS_MB = 1.5e9 / 2**20  # 1.5 GB, in the MiB every peak RSS here is measured in ("MB" in the tables)
GOAL_RSS_GROWTH = 0.30


# -- sizes ----------------------------------------------------------------------------------------------
MIN_LINES = 1_000  # the smallest --lines the harness measures


def parse_size(text: str) -> int:
    """``20k``, ``1M``, ``1.5M``, ``200000`` -> a line count."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a line count: {text!r} (use e.g. 20k, 1M, 10M)")
    mult = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def size_label(n: int) -> str:
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= div and n % (div // 10) == 0:
            v = n / div
            return f"{v:g}{suffix}"
    return str(n)


# -- configuration ------------------------------------------------------------------------------------
@dataclass
class BenchConfig:
    sizes: list[int]
    repeat: int = 3
    targets: list[str] = field(default_factory=lambda: list(TARGETS))
    out: Path = DEFAULT_OUT
    cache: Path = DEFAULT_CACHE
    seed: int = 7
    baseline_lines: int = 200_000
    baseline_repeat: int = 1
    incr_lines: int = 30_000
    pg_url: str = DEFAULT_PG
    baselines: bool = True
    readme: Path | None = None
    keep_work: bool = False
    code: str | None = None  # a git revision to measure instead of the working tree
    unit_size: str | None = None  # every measured `observer etl` run's --unit-size (None: the engine's default)
    command: str = ""  # as typed, a --pg-url password redacted (it goes into results.json, which is committed)

    def to_json(self) -> dict[str, Any]:
        """For results.json, which is committed: no password of --pg-url."""
        from engine.load import redact_target

        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        d["pg_url"] = redact_target(self.pg_url)
        return d


def parse_args(argv: list[str] | None = None, prog: str = "python -m bench") -> BenchConfig:
    """The harness's options; ``prog`` is how it was started (``observer bench`` runs the same harness),
    for its usage and errors and for the command the results record."""
    ap = argparse.ArgumentParser(
        prog=prog,
        description="Benchmark observer-etl end to end against its floors and baselines on generated archives.",
    )
    ap.add_argument("--lines", action="append", type=parse_size, required=True,
                    help="archive size in lines (k/M suffixes); repeat the option for several sizes")
    ap.add_argument("--repeat", type=int, default=3, help="runs of every measurement (median and min/max reported)")
    ap.add_argument("--targets", default=None,
                    help="comma-separated: sqlite,postgresql (default both; PostgreSQL skipped with a note when no "
                         "server answers, unless --targets or --pg-url names it)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="generated archives, reused when present")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--baseline-lines", type=parse_size, default=200_000,
                    help="lines of the sample the (slow) baselines run on")
    ap.add_argument("--baseline-repeat", type=int, default=1, help="runs of each baseline (they are slow)")
    ap.add_argument("--incr-lines", type=parse_size, default=30_000,
                    help="lines of the one new hour of the incremental run (contract: 20k-50k an hour)")
    ap.add_argument("--pg-url", default=None,
                    help="PostgreSQL server (a database to connect to for CREATE/DROP DATABASE)")
    ap.add_argument("--no-baselines", action="store_true", help="skip the per-record and dlt baselines")
    ap.add_argument("--readme", type=Path, default=None,
                    help="also write the results table into this README, between the bench-results markers")
    ap.add_argument("--keep-work", action="store_true", help="keep databases/staging of the last runs (debugging)")
    ap.add_argument("--code", default=None, metavar="REV",
                    help="measure the engine as committed at this git revision (e.g. HEAD), or 'worktree' for a frozen "
                         "copy of the working tree (default: the live working tree)")
    ap.add_argument("--unit-size", default=None, metavar="SIZE",
                    help="--unit-size of every measured observer etl run, e.g. 4MB (default: the engine's, "
                         "128MB): the memory a run holds against its speed, measured side by side with the floors")
    ns = ap.parse_args(argv)
    targets = [t.strip() for t in (ns.targets or ",".join(TARGETS)).split(",") if t.strip()]
    bad = [t for t in targets if t not in TARGETS]
    if bad:
        ap.error(f"unknown target(s) {bad}: use sqlite,postgresql")
    if ns.repeat < 1:
        ap.error("--repeat must be at least 1")
    small = [n for n in ns.lines if n < MIN_LINES]
    if small:
        ap.error(f"--lines {small[0]}: measure at least {size_label(MIN_LINES)} lines")
    for flag, n in (("--baseline-lines", ns.baseline_lines), ("--incr-lines", ns.incr_lines)):
        if n < 1:
            ap.error(f"{flag} must be at least 1")
    # Late, like every engine import here: --help needs no Polars.
    from engine.config import ConfigError, parse_size as parse_bytes
    from engine.load import redact
    from staging.layout import unwritable

    if ns.unit_size is not None:
        try:
            parse_bytes(ns.unit_size, "--unit-size")
        except ConfigError as exc:
            ap.error(str(exc))
    for flag, d in (("--out", ns.out), ("--cache", ns.cache)):
        problem = unwritable(d)
        if problem:
            ap.error(f"{flag} {d} is not a writable directory ({problem})")
    if "postgresql" in targets and (ns.targets is not None or ns.pg_url is not None):
        # Asked for by name: a server that does not answer stops the run now, not as a note after the
        # SQLite measurements (and a run of only PostgreSQL would measure nothing and succeed).
        reason = PgServer(ns.pg_url or DEFAULT_PG).check()
        if reason:
            ap.error(f"PostgreSQL was asked for: {reason}")
    shown = [*shlex.split(prog), *(argv if argv is not None else sys.argv[1:])]
    return BenchConfig(
        sizes=ns.lines, repeat=ns.repeat, targets=targets, out=ns.out, cache=ns.cache, seed=ns.seed,
        baseline_lines=ns.baseline_lines, baseline_repeat=ns.baseline_repeat, incr_lines=ns.incr_lines,
        pg_url=ns.pg_url or DEFAULT_PG, baselines=not ns.no_baselines, readme=ns.readme, keep_work=ns.keep_work, code=ns.code,
        unit_size=ns.unit_size, command=redact(shlex.join(shown)),
    )


# -- output ---------------------------------------------------------------------------------------------
def _console():  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def log(msg: str) -> None:
    _console().print(f"[dim]{datetime.now().strftime('%H:%M:%S')}[/] {msg}")


def _rel(p: Path | str) -> str:
    p = Path(p)
    try:
        return p.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return str(p)


# -- child processes ----------------------------------------------------------------------------------
class ChildFailed(RuntimeError):
    pass


# The code under measurement: the working tree, or a snapshot of a git revision (``--code REF``).
CODE: Path = REPO


def _env(code: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    first = str(code or REPO)
    env["PYTHONPATH"] = first + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


ENGINE_PATHS = ("engine", "schemas", "staging", "cli.py")


def worktree_snapshot(cache: Path, out: Path) -> tuple[Path, str]:
    """A frozen copy of the working tree's engine (others may edit it during a long run).

    The diff against HEAD is written to ``<out>/code.diff``; the label is ``<HEAD>+<hash of the diff>``.
    """
    import hashlib

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()
    diff = subprocess.run(["git", "diff", "HEAD", "--", *ENGINE_PATHS], cwd=REPO, capture_output=True,
                          check=True).stdout
    label = f"{head}+{hashlib.blake2b(diff, digest_size=4).hexdigest()}" if diff else head
    dest = cache / f"code-{label}"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ENGINE_PATHS:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    (dest / "bench").mkdir()
    (dest / "bench" / "__init__.py").touch()
    shutil.copy2(REPO / "bench" / "child.py", dest / "bench" / "child.py")
    out.mkdir(parents=True, exist_ok=True)
    (out / "code.diff").write_bytes(diff)
    return dest, label


def code_snapshot(ref: str, cache: Path) -> tuple[Path, str]:
    """``git archive REF`` unpacked under the cache, plus the working tree's bench/child.py: the code measured."""
    sha = subprocess.run(["git", "rev-parse", "--short", f"{ref}^{{commit}}"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip()
    dest = cache / f"code-{sha}"
    if not (dest / ".complete").exists():
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", "--format=tar", sha], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        (dest / ".complete").write_text(sha)
    (dest / "bench").mkdir(exist_ok=True)
    (dest / "bench" / "__init__.py").touch()
    shutil.copy2(REPO / "bench" / "child.py", dest / "bench" / "child.py")
    return dest, sha


def run_child(argv: list[str], timeout: float | None = None) -> dict[str, Any]:
    """Run one measurement process; its JSON result plus ``wall_s`` and ``peak_rss_mb`` (from wait4)."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    # -P: no current directory on sys.path, so ``-m cli`` / ``-m bench.child`` import from CODE.
    argv = [argv[0], "-P", *argv[1:]] if argv[0] == sys.executable else argv
    env = _env(CODE)
    hwm = Path(tempfile.mkstemp(prefix="bench-hwm-")[1])
    env["BENCH_HWM_FILE"] = str(hwm)
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = _drain(proc, timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    wall = time.perf_counter() - t0
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    from engine.load import redact  # a --pg-url password is in a PostgreSQL run's argv

    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip().splitlines()[-15:]
        raise ChildFailed(redact(f"{shlex.join(argv)} exited {proc.returncode}:\n" + "\n".join(tail)))
    lines = [ln for ln in out.decode("utf-8", "replace").splitlines() if ln.strip().startswith("{")]
    if not lines:
        raise ChildFailed(redact(f"{shlex.join(argv)} printed no JSON result"))
    result = json.loads(lines[-1])
    result["wall_s"] = wall
    own = hwm.read_text().strip() if hwm.exists() else ""
    hwm.unlink(missing_ok=True)
    if own.isdigit():  # the process's own VmHWM, written at its exit
        result["peak_rss_mb"], result["rss_source"] = int(own) / 1024.0, "VmHWM"
    else:  # ru_maxrss also counts the harness's RSS at fork: an upper bound
        result["peak_rss_mb"], result["rss_source"] = usage.ru_maxrss / 1024.0, "ru_maxrss"
    result["loadavg_before"] = round(load, 2)  # other work on the machine shows here
    return result


def _drain(proc: subprocess.Popen, timeout: float | None) -> tuple[bytes, bytes]:
    """Read stdout and stderr to EOF without reaping the child (so that wait4 still can)."""
    import threading

    bufs: dict[str, bytes] = {}

    def read(name: str, stream: Any) -> None:
        bufs[name] = stream.read()

    threads = [threading.Thread(target=read, args=(n, s)) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in threads:
        t.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    for t in threads:
        t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            raise subprocess.TimeoutExpired(proc.args, timeout or 0)
    return bufs.get("out", b""), bufs.get("err", b"")


def child_task(task: str, args: dict[str, Any]) -> tuple[list[str], str]:
    argv = [sys.executable, "-m", "bench.child", task, "--args-json", json.dumps(args)]
    shown = ["python", "-m", "bench.child", task, "--args-json", json.dumps(args)]
    return argv, shlex.join(shown)


def etl_task(source: Path, target: str, staging: Path, unit_size: str | None = None) -> tuple[list[str], str]:
    flags = ["--source", _rel(source), "--target", target, "--staging", _rel(staging),
             *(["--unit-size", unit_size] if unit_size else []), "--json"]
    # bench.child exec-module runs the CLI unchanged and records its peak RSS at exit.
    argv = [sys.executable, "-m", "bench.child", "exec-module", "cli", "etl", *flags]
    from engine.load import redact  # the command goes into results.json, which is committed

    return argv, redact(shlex.join(["observer", "etl", *flags]))


# -- PostgreSQL databases -----------------------------------------------------------------------------
class PgServer:
    def __init__(self, url: str) -> None:
        self.url = url
        self.base = url.rpartition("/")[0]

    def _sql(self, *statements: str, url: str | None = None) -> list[tuple[Any, ...]]:
        """Run statements on a connection of their own (autocommit; the admin database unless ``url``);
        the last one's rows."""
        import adbc_driver_postgresql.dbapi as pg

        conn = pg.connect(url or self.url, autocommit=True)
        cur = conn.cursor()
        rows: list[tuple[Any, ...]] = []
        try:
            for sql in statements:
                cur.execute(sql)
                rows = cur.fetchall() if cur.description else []
        finally:
            cur.close()
            conn.close()
        return rows

    def check(self) -> str | None:
        try:
            self._sql("SELECT 1")
            return None
        except Exception as exc:  # noqa: BLE001
            from engine.load import redact, redact_target

            return f"no PostgreSQL at {redact_target(self.url)} ({redact(str(exc).strip().splitlines()[0])})"

    def version(self) -> str:
        return str(self._sql("SELECT current_setting('server_version')")[0][0])

    def create(self, tag: str) -> str:
        name = re.sub(r"[^a-z0-9_]", "_", f"bench_{tag}_{secrets.token_hex(3)}".lower())
        self._sql(f"CREATE DATABASE {name}")
        return f"{self.base}/{name}"

    def checkpoint(self) -> None:
        """Write out the shared buffers a load left dirty now, not while the next measured run works."""
        self._sql("CHECKPOINT")

    def vacuum_analyze(self, url: str) -> None:
        """VACUUM ANALYZE the database at ``url``: what autovacuum does after a big load, done now.

        Autovacuum wakes within a minute of a 9.6M-row insert and works through the table for tens of
        seconds, beside whatever runs then; a user's next daily run meets a table it finished long ago.
        """
        self._sql("VACUUM (ANALYZE)", url=url)

    def drop(self, url: str) -> None:
        name = url.rpartition("/")[2]
        self._sql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()",
            f"DROP DATABASE IF EXISTS {name}",
        )


class Databases:
    """Fresh databases for measured runs: a new SQLite file, or a new PostgreSQL database (dropped after)."""

    def __init__(self, work: Path, pg: PgServer) -> None:
        self.work, self.pg = work, pg
        self.live: list[str] = []

    def fresh(self, target: str, tag: str) -> str:
        if target == "sqlite":
            path = self.work / f"{tag}-{secrets.token_hex(3)}.db"
            url = f"sqlite:///{_rel(path)}"  # children run in the repository root
        else:
            url = self.pg.create(tag)
        self.live.append(url)
        return url

    def drop(self, url: str) -> None:
        if url.startswith("sqlite:"):
            path = REPO / url.split(":///", 1)[1]  # relative to the repository root, or absolute
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        else:
            self.pg.drop(url)
        if url in self.live:
            self.live.remove(url)

    def drop_all(self) -> None:
        for url in list(self.live):
            try:
                self.drop(url)
            except Exception:  # noqa: BLE001 - best effort at the end
                pass


# -- archives ---------------------------------------------------------------------------------------------
def ensure_archive(lines: int, seed: int, cache: Path) -> tuple[Path, dict[str, Any]]:
    """The generated archive of about ``lines`` lines: from the cache, else made with bench.generate."""
    base = cache / f"{size_label(lines)}-{seed}"
    root = base / "archive"
    done = base / ".complete"
    from bench.generate import expected_path

    expected_file = expected_path(root)
    gen_hash = generator_hash()
    if done.exists() and json.loads(done.read_text() or "{}").get("generator") != gen_hash:
        log(f"[yellow]{_rel(base)} was made by another version of bench/generate.py: regenerating[/]")
        done.unlink()
    if not done.exists():
        if base.exists():
            shutil.rmtree(base)
        base.mkdir(parents=True)
        log(f"generating a {size_label(lines)}-line archive in {_rel(root)} (seed {seed})")
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "bench.generate", "--out", str(root), "--lines", str(lines), "--seed", str(seed)]
        subprocess.run(cmd, cwd=REPO, env=_env(), check=True, stdout=subprocess.DEVNULL)
        done.write_text(json.dumps({"generator": gen_hash, "generated_in_s": round(time.perf_counter() - t0, 1), "command": shlex.join(
            ["python", "-m", "bench.generate", "--out", _rel(root), "--lines", str(lines), "--seed", str(seed)])}))
    return root, _expected_head(expected_file)


def _expected_head(path: Path) -> dict[str, Any]:
    """The generator's answer without its per-line reject list (millions of entries at 10M lines)."""
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    cut = text.find('\n  "rejects": ')
    if cut > 0:
        try:
            return json.loads(text[:cut].rstrip().rstrip(",") + "\n}")
        except ValueError:
            pass
    doc = json.loads(text)
    doc.pop("rejects", None)
    return doc


def generator_hash() -> str:
    import hashlib

    return hashlib.blake2b((REPO / "bench" / "generate.py").read_bytes(), digest_size=8).hexdigest()


def link_copy(src: Path, dest: Path) -> None:
    """A copy of the archive made of hard links: cheap, and the incremental run may add files to it."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, copy_function=os.link)


def page_cache_share(paths: list[Path]) -> float | None:
    """The share of these files' bytes in the page cache now (``mincore``), or None where it cannot say."""
    import ctypes
    import mmap

    import numpy as np

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype, libc.mmap.argtypes = ctypes.c_void_p, [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    page = mmap.PAGESIZE
    total = resident = 0
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                continue
            addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                return None
            try:
                vec = (ctypes.c_ubyte * ((size + page - 1) // page))()
                if libc.mincore(addr, size, vec) != 0:
                    return None
                resident += int(np.count_nonzero(np.frombuffer(vec, dtype=np.uint8) & 1)) * page
                total += size
            finally:
                libc.munmap(addr, size)
        finally:
            os.close(fd)
    return min(1.0, resident / total) if total else None


def warm(paths: list[Path]) -> dict[str, Any]:
    """Read files into the page cache before a timed run that reads them, and say what was there before.

    This machine (a VM) pages out page-cache memory that has not been touched for about a minute
    (DAMON's proactive reclaim), whatever memory is free: a 10M archive read by one run is partly gone
    by the next, so some runs read from disk and some do not. Every run that reads the archive, floor
    and end to end alike, starts from it warm instead.
    """
    before = page_cache_share(paths)
    t = time.perf_counter()
    for p in paths:
        with p.open("rb", buffering=0) as fh:
            while fh.read(1 << 24):
                pass
    return {"cached_before": None if before is None else round(before, 3), "seconds": round(time.perf_counter() - t, 2)}


def archive_stats(root: Path) -> dict[str, Any]:
    files = jsonl_files(root)
    every = [p for p in root.rglob("*") if p.is_file()]
    return {
        "files": len(every),
        "jsonl_files": len(files),
        "bytes": sum(p.stat().st_size for p in every),
        "jsonl_bytes": sum(s for _, _, s in files),
        "scalp_bytes": sum(s for k, _, s in files if k == "scalp"),
        "swing_bytes": sum(s for k, _, s in files if k == "swing"),
    }


def _last_scalp_day(root: Path) -> date:
    days = []
    for p in (root / "assets" / "scalp").glob("*.jsonl"):
        m = re.match(r"^(\d{8})", p.name)
        if m:
            days.append(datetime.strptime(m.group(1), "%Y%m%d").date())
    swing = [datetime.strptime(p.stem, "%Y%m%d").date() for p in (root / "assets" / "swing").glob("*.jsonl")
             if re.fullmatch(r"\d{8}", p.stem)]
    return max(days + swing)


def _next_weekday(d: date) -> date:
    d += timedelta(days=1)
    while d.weekday() >= 5:
        d += timedelta(days=1)
    return d


def extra_hours(cache: Path, after: date, lines: int, seed: int, n: int) -> list[Path]:
    """``n`` full hours of new ticks (``<day>_10.jsonl`` .. ``_14``), ``lines`` lines each, for days after ``after``.

    They come from the generator itself (same shapes, clean, complete last lines) at a tick rate of
    ``lines`` an hour, for weekdays after the archive's last day, so every line is new to the database.
    The ``_09`` file holds only half an hour (collection starts at 09:30), so the full hours 10-14 are
    used. Their size does not depend on the archive's, so the cost of "one new hour" compares across
    archive sizes. Generated once and cached.
    """
    from bench.generate import generate_archive

    out: list[Path] = []
    day = after
    while len(out) < n:
        day = _next_weekday(day)
        base = cache / f"extra-{size_label(lines)}-{seed}-{day:%Y%m%d}"
        if not (base / ".complete").exists() or (base / ".complete").read_text() != generator_hash():
            generate_archive(base / "archive", start=day, days=1, ticks_per_hour=lines, seed=seed + 1000,
                             dirt=False, growing=False, overwrite=True)
            (base / ".complete").write_text(generator_hash())
        out += [base / "archive" / "assets" / "scalp" / f"{day:%Y%m%d}_{h}.jsonl" for h in range(10, 15)]
    return out[:n]


# -- statistics ---------------------------------------------------------------------------------------------
def summarize(runs: list[dict[str, Any]], lines_key: str = "lines", bytes_key: str = "bytes") -> dict[str, Any]:
    """Median and spread of a measurement's runs: seconds, lines/s, MB/s, peak RSS."""
    secs = [r["seconds"] for r in runs]
    lps = [r[lines_key] / r["seconds"] if r["seconds"] > 0 else 0.0 for r in runs]
    mbs = [r[bytes_key] / 1e6 / r["seconds"] if r["seconds"] > 0 else 0.0 for r in runs]
    rss = [r["peak_rss_mb"] for r in runs]
    walls = [r["wall_s"] for r in runs]
    return {
        "n": len(runs),
        "lines": int(statistics.median(r[lines_key] for r in runs)),
        "bytes": int(statistics.median(r[bytes_key] for r in runs)),
        "seconds": _spread(secs),
        "wall_s": _spread(walls),
        "lines_per_s": _spread(lps),
        "mb_per_s": _spread(mbs),
        "peak_rss_mb": _spread(rss),
        "command": runs[-1].get("command", ""),
        "runs": runs,
    }


def _spread(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def _skip(reason: str) -> dict[str, Any]:
    return {"skipped": reason}


# -- the benchmark ---------------------------------------------------------------------------------------
class Bench:
    def __init__(self, cfg: BenchConfig) -> None:
        self.cfg = cfg
        self.pg = PgServer(cfg.pg_url)
        self.results: dict[str, Any] = {
            "schema": 1,
            "command": cfg.command,
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "finished_at": None,
            "machine": {},
            "config": cfg.to_json(),
            "sizes": [],
            "targets_check": [],
            "notes": [],
        }

    def save(self) -> None:
        from bench import report

        self.cfg.out.mkdir(parents=True, exist_ok=True)
        (self.cfg.out / "results.json").write_text(json.dumps(self.results, indent=1, default=str) + "\n")
        report.write_markdown(self.results, self.cfg.out / "results.md")
        if self.cfg.readme is not None:
            report.update_readme(self.results, self.cfg.readme)

    def run(self) -> dict[str, Any]:
        from bench import report

        global CODE
        cfg = self.cfg
        CODE = REPO
        if cfg.code == "worktree":
            CODE, sha = worktree_snapshot(cfg.cache, cfg.out)
            self.results["code"] = {"rev": "worktree", "commit": sha, "snapshot": _rel(CODE),
                                    "diff": _rel(cfg.out / "code.diff")}
            log(f"measuring a frozen copy of the working tree: {sha} ({_rel(CODE)}; diff in {_rel(cfg.out / 'code.diff')})")
        elif cfg.code:
            CODE, sha = code_snapshot(cfg.code, cfg.cache)
            self.results["code"] = {"rev": cfg.code, "commit": sha, "snapshot": _rel(CODE)}
            log(f"measuring the engine as committed at {sha} ({_rel(CODE)})")
        else:
            self.results["code"] = {"rev": None, "commit": None, "snapshot": None}
        if "postgresql" in cfg.targets:
            reason = self.pg.check()
            if reason:
                self.results["notes"].append(f"PostgreSQL skipped: {reason}")
                log(f"[yellow]PostgreSQL skipped:[/] {reason}")
                cfg.targets = [t for t in cfg.targets if t != "postgresql"]
        self.results["machine"] = machine_info(self.pg if "postgresql" in cfg.targets else None)
        if cfg.code == "worktree":
            self.results["machine"]["git"] = (f"{self.results['code']['commit']} (HEAD plus the uncommitted engine "
                                              f"changes in {self.results['code']['diff']}, frozen for the run)")
        elif cfg.code:
            self.results["machine"]["git"] = f"{self.results['code']['commit']} (`git archive {cfg.code}`)"
        for lines in cfg.sizes:
            entry = self.run_size(lines)
            self.results["sizes"].append(entry)
            self.results["targets_check"] = report.check_targets(self.results)
            self.save()
        CODE = REPO
        self.results["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.results["targets_check"] = report.check_targets(self.results)
        self.save()
        try:
            report.write_chart(self.results, cfg.out / "results.png")
        except ImportError as exc:
            self.results["notes"].append(f"no chart: {exc} (pip install -e '.[bench]')")
            self.save()
        report.print_tables(self.results)
        return self.results

    # One archive size: every measurement, every target.
    def run_size(self, lines: int) -> dict[str, Any]:
        cfg = self.cfg
        label = size_label(lines)
        pristine, expected = ensure_archive(lines, cfg.seed, cfg.cache)
        work = cfg.cache / f"{label}-{cfg.seed}" / "work"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        archive = work / "archive"
        link_copy(pristine, archive)
        entry: dict[str, Any] = {
            "label": label,
            "lines_requested": lines,
            "archive": {
                "path": _rel(pristine), **archive_stats(pristine), "expected": _expected_brief(expected),
                "command": shlex.join(["python", "-m", "bench.generate", "--out", _rel(pristine), "--lines", str(lines),
                                       "--seed", str(cfg.seed)]),
            },
            "parse_floor": None,
            "targets": {},
        }
        self.results["sizes"] = [s for s in self.results["sizes"] if s["label"] != label]
        dbs = Databases(work, self.pg)
        try:
            for target in cfg.targets:
                try:
                    entry["targets"][target] = self.run_target(label, target, archive, work, dbs)
                except ChildFailed as exc:
                    log(f"[red]{label} {target} failed:[/] {exc}")
                    self.results["notes"].append(f"{label} {target}: a measured run failed: {_error_line(str(exc))}")
                self.results["sizes"].append(entry)  # partial results survive a crash
                self.save()
                self.results["sizes"].remove(entry)
            parse_runs = [r for t in entry["targets"].values() for r in t.get("parse_floor", {}).get("runs", [])]
            if not parse_runs:  # no target ran: the parse floor still says what the machine does today
                files = [p for _, p, _ in jsonl_files(archive)]
                parse_runs = [self._parse_floor(label, archive, files, i) for i in range(cfg.repeat)]
            entry["parse_floor"] = summarize(parse_runs)
        finally:
            dbs.drop_all()
            if not cfg.keep_work:
                shutil.rmtree(work, ignore_errors=True)
        return entry

    def run_target(self, label: str, target: str, archive: Path, work: Path, dbs: Databases) -> dict[str, Any]:
        from bench import report

        cfg = self.cfg
        out: dict[str, Any] = {}
        tag = f"{label}_{target}"
        # 1. Rounds: each end-to-end run (fresh database and staging) with a parse floor and an ingest floor
        # run right beside it, so that each ratio to the floor compares runs minutes apart, not a quarter of
        # an hour: this machine's speed drifts by 15 % within half an hour. The first run stages the rows
        # the ingest floor loads (hard links, so the copy costs nothing and keeps the parts that a later
        # compaction replaces); the last run's database and staging are kept for the small runs.
        jsonl_bytes = archive_stats(archive)["jsonl_bytes"]
        files = [p for _, p, _ in jsonl_files(archive)]
        floor_rows = work / f"floor-rows-{target}"
        e2e_runs, parse_runs, ingest_runs = [], [], []
        kept: tuple[str, Path] | None = None
        for i in range(cfg.repeat):
            url = dbs.fresh(target, f"e2e_{tag}")
            staging = work / f"staging-{target}-{i}"
            if i == 0:
                e2e = self._e2e(label, target, archive, files, url, staging, jsonl_bytes, i)
                for table in ("scalp_ticks", "swing_snapshots"):
                    if (staging / table).exists():
                        link_copy(staging / table, floor_rows / table)
            parse_runs.append(self._parse_floor(label, archive, files, i))
            ingest_runs.append(self._ingest_floor(label, target, tag, floor_rows, dbs, jsonl_bytes, i))
            if i > 0:
                e2e = self._e2e(label, target, archive, files, url, staging, jsonl_bytes, i)
            e2e_runs.append(e2e)  # round i: e2e_runs[i], parse_runs[i], ingest_runs[i] (report.rounds)
            if i < cfg.repeat - 1:
                dbs.drop(url)
                shutil.rmtree(staging, ignore_errors=True)
            else:
                kept = (url, staging)
        shutil.rmtree(floor_rows, ignore_errors=True)
        out["e2e"] = summarize(e2e_runs)
        out["e2e"]["stages"] = {
            k: statistics.median(r["stage_seconds"].get(k, 0.0) for r in e2e_runs)
            for k in report.STAGES
        }
        out["e2e"]["counts"] = {k: e2e_runs[-1][k] for k in ("lines_read", "loaded", "duplicates", "rejected", "held_back")}
        out["parse_floor"] = summarize(parse_runs)
        out["ingest_floor"] = summarize(ingest_runs)
        assert kept is not None
        url, staging = kept

        # 2. nothing new, then one new hour at a time, on a settled machine.
        out["settle_s"] = self.settle(target, url)
        runs = []
        for i in range(cfg.repeat):
            log(f"{label} {target}: nothing new {i + 1}/{cfg.repeat}")
            runs.append(self._etl(archive, url, staging, 0))
        out["nothing_new"] = summarize(runs)
        runs, extras = [], []
        # The day's first hour off the clock: every timed run appends an hour to a day already staged (an
        # hourly run's case), not the first a new partition and the rest to one.
        # (a day has five such hours: a sixth run takes the next day, whose first hour is untimed again)
        sources = extra_hours(cfg.cache, _last_scalp_day(archive), cfg.incr_lines, cfg.seed,
                              cfg.repeat + (cfg.repeat + 3) // 4)
        try:
            for src in sources:
                extra = archive / "assets" / "scalp" / src.name
                os.link(src, extra)
                extras.append(extra)
                extra.read_bytes()  # the collector that just wrote the hour leaves its pages in the page cache
                if src.name.endswith("_10.jsonl"):
                    log(f"{label} {target}: the new day's first hour ({extra.relative_to(archive)}), untimed")
                    self._etl(archive, url, staging, extra.stat().st_size)
                    continue
                log(f"{label} {target}: one new hour ({extra.relative_to(archive)}) {len(runs) + 1}/{cfg.repeat}")
                r = self._etl(archive, url, staging, extra.stat().st_size)
                r["new_file"] = extra.relative_to(archive).as_posix()
                runs.append(r)
        finally:
            for p in extras:  # the archive is shared by the next target: take the extra hours out again
                p.unlink(missing_ok=True)
        out["incremental"] = summarize(runs)
        if not cfg.keep_work:
            dbs.drop(url)
            shutil.rmtree(staging, ignore_errors=True)

        # 3. baselines on a sample.
        out["baselines"] = self.run_baselines(label, target, archive, work, dbs, out["e2e"]["lines"])
        return out

    def settle(self, target: str, url: str) -> float:
        """Let the writes of the big runs before finish, off the clock: seconds it took.

        A 10M-line load leaves gigabytes for the kernel to write back (and PostgreSQL's checkpointer
        several more, and autovacuum a pass over the new table); a sub-second run timed in the middle of
        that measures the disk, not the run. A user's daily small runs meet a settled machine, so the
        harness settles it first: a PostgreSQL ``VACUUM (ANALYZE)`` of the database just loaded and a
        ``CHECKPOINT``, then ``sync``.
        """
        t = time.perf_counter()
        if target == "postgresql":
            try:
                self.pg.vacuum_analyze(url)
                self.pg.checkpoint()
            except Exception as exc:  # noqa: BLE001 - a non-superuser may not checkpoint: measure anyway
                log(f"the database was not settled before the small runs ({_error_line(str(exc))})")
        os.sync()
        return round(time.perf_counter() - t, 2)

    def _e2e(self, label: str, target: str, archive: Path, files: list[Path], url: str, staging: Path,
             nbytes: int, i: int) -> dict[str, Any]:
        w = warm(files)
        log(f"{label} {target}: end to end {i + 1}/{self.cfg.repeat}")
        r = self._etl(archive, url, staging, nbytes)
        r["warm"] = w
        return r

    def _parse_floor(self, label: str, archive: Path, files: list[Path], i: int) -> dict[str, Any]:
        w = warm(files)
        log(f"{label}: parse floor {i + 1}/{self.cfg.repeat}")
        argv, shown = child_task("parse-floor", {"archive": _rel(archive)})
        r = run_child(argv)
        r.update(lines=r["rows"], command=shown, warm=w)
        return r

    def _ingest_floor(self, label: str, target: str, tag: str, rows: Path, dbs: Databases, nbytes: int,
                      i: int) -> dict[str, Any]:
        """ADBC ingest of the staged rows into a fresh database with no key or index (dropped after)."""
        url = dbs.fresh(target, f"floor_{tag}")
        log(f"{label} {target}: ingest floor {i + 1}/{self.cfg.repeat}")
        argv, shown = child_task("ingest-floor", {"staging": _rel(rows), "target": url})
        r = run_child(argv)
        r.update(lines=r["rows"], bytes=nbytes, command=shown)
        dbs.drop(url)
        return r

    def _etl(self, archive: Path, url: str, staging: Path, nbytes: int) -> dict[str, Any]:
        argv, shown = etl_task(archive, url, staging, self.cfg.unit_size)
        r = run_child(argv)
        r.update(lines=r["lines_read"], bytes=nbytes, command=shown)
        return r

    def run_baselines(
        self, label: str, target: str, archive: Path, work: Path, dbs: Databases, total_lines: int
    ) -> dict[str, Any]:
        cfg = self.cfg
        if not cfg.baselines:
            return {"per_record": _skip("--no-baselines"), "dlt": _skip("--no-baselines")}
        fraction = min(1.0, cfg.baseline_lines / max(total_lines, 1))
        args = {"archive": _rel(archive), "fraction": fraction, "max_lines": cfg.baseline_lines}
        out: dict[str, Any] = {}
        tag = f"{label}_{target}"
        for name, task, missing in (
            ("per_record", "per-record", _missing_driver(target)),
            ("dlt", "dlt", _missing_dlt(target)),
        ):
            if missing:
                log(f"[yellow]{label} {target}: {name} baseline skipped:[/] {missing}")
                out[name] = _skip(missing)
                continue
            runs = []
            for i in range(cfg.baseline_repeat):
                if target == "sqlite":
                    # A separate file that ADBC never touches (sqlite3 and ADBC must not share a WAL file).
                    url = f"sqlite:///{_rel(work / f'baseline-{name}-{secrets.token_hex(3)}.db')}"
                    dbs.live.append(url)
                else:
                    url = dbs.fresh(target, f"{name}_{tag}")
                log(f"{label} {target}: {name} baseline on {cfg.baseline_lines:,} lines {i + 1}/{cfg.baseline_repeat}")
                a = dict(args, target=url, tag=f"{tag}_{i}", pipelines_dir=_rel(work / f"dlt-{secrets.token_hex(3)}"))
                argv, shown = child_task(task, a)
                try:
                    r = run_child(argv)
                except ChildFailed as exc:
                    log(f"[red]{name} baseline failed:[/] {exc}")
                    runs = []
                    out[name] = _skip(f"failed: {_error_line(str(exc))}")
                    dbs.drop(url)
                    break
                r.update(command=shown, sample=True)
                runs.append(r)
                dbs.drop(url)
            if runs:
                out[name] = summarize(runs)
                out[name]["sample"] = True
        return out


def _error_line(text: str) -> str:
    """The most telling line of a child's stderr: the last exception line, else the last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception)\b", ln):
            return ln[:300]
    return lines[-1][:300] if lines else "?"


def _missing_driver(target: str) -> str | None:
    if target == "sqlite":
        return None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg (3) is not installed: pip install -e '.[bench]'"
    return None


def _missing_dlt(target: str) -> str | None:
    try:
        import dlt  # noqa: F401
    except ImportError:
        return "dlt is not installed: pip install -e '.[bench]'"
    if target == "sqlite":
        try:
            import sqlalchemy  # noqa: F401
        except ImportError:
            return "dlt's sqlalchemy destination needs sqlalchemy: pip install -e '.[bench]'"
    else:
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            return "dlt's postgres destination needs psycopg2: pip install -e '.[bench]'"
    return None


def _expected_brief(expected: dict[str, Any]) -> dict[str, Any]:
    """The generator's own accounting, scalars only (to compare with what the ETL counted)."""
    return {k: v for k, v in expected.items() if isinstance(v, (int, float, str, bool)) or v is None}


def machine_info(pg: PgServer | None) -> dict[str, Any]:
    import sqlite3

    import adbc_driver_postgresql
    import adbc_driver_sqlite
    import polars as pl
    import pyarrow as pa

    from engine.load import bundled_sqlite_version

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "polars": pl.__version__,
        "pyarrow": pa.__version__,
        "adbc_driver_sqlite": getattr(adbc_driver_sqlite, "__version__", "?"),
        "adbc_driver_postgresql": getattr(adbc_driver_postgresql, "__version__", "?"),
        # The engine's SQLite is the one ADBC's driver bundles (3.53 with driver 1.13), not Python's
        # sqlite3 module's, which only the per-record baseline uses.
        "sqlite": bundled_sqlite_version(),
        "sqlite_module": sqlite3.sqlite_version,
        "postgresql": pg.version() if pg is not None else None,
    }
    try:
        info["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                     text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "engine", "schemas", "staging", "cli.py"],
                               cwd=REPO, capture_output=True, text=True).stdout.strip()
        if dirty:
            info["git"] += " (engine with uncommitted changes)"
    except Exception:  # noqa: BLE001
        pass
    return info


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run the whole benchmark; returns what it wrote to ``cfg.out/results.json``."""
    return Bench(cfg).run()


def main(argv: list[str] | None = None, prog: str = "python -m bench") -> int:
    """0 when every measurement ran (a skipped target or baseline is a note, not a failure); 1 when a
    measured run failed, so a script driving the benchmark notices."""
    cfg = parse_args(argv, prog)
    results = run_bench(cfg)
    failed = [n for n in results["notes"] if "a measured run failed" in n]
    for note in failed:
        log(f"[red]{note}[/]")
    return 1 if failed else 0
