"""Smoke test of the benchmark harness: a tiny run writes sane results. No timing assertions."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import os
import sys

import pytest

from bench import report
from bench.harness import BenchConfig, page_cache_share, parse_args, parse_size, run_bench, size_label, warm
from bench.report import floor_ratio
from engine.load import bundled_sqlite_version


def test_sizes_parse_and_print() -> None:
    assert parse_size("20k") == 20_000
    assert parse_size("1M") == 1_000_000
    assert parse_size("1.5M") == 1_500_000
    assert parse_size("200000") == 200_000
    assert size_label(1_000_000) == "1M" and size_label(200_000) == "200k" and size_label(10_000_000) == "10M"
    cfg = parse_args(["--lines", "1M", "--lines", "10M", "--repeat", "2", "--targets", "sqlite"])
    assert cfg.sizes == [1_000_000, 10_000_000] and cfg.repeat == 2 and cfg.targets == ["sqlite"]
    # A measured run's command and its failure go into results.json too.
    from bench.harness import ChildFailed, etl_task, run_child

    url = "postgresql://u:s3cret@127.0.0.1:1/y"
    assert "s3cret" not in etl_task(Path("a"), url, Path("s"))[1]
    with pytest.raises(ChildFailed) as failed:
        run_child([sys.executable, "-c", "import sys; sys.exit(1)", "--target", url])
    assert "s3cret" not in str(failed.value) and "u:***@" in str(failed.value)
    # results.json is committed: a --pg-url password stays out of it.
    secret = parse_args(["--lines", "1k", "--targets", "sqlite", "--pg-url", "postgresql://u:s3cret@h/db"]).to_json()
    assert "s3cret" not in json.dumps(secret) and secret["pg_url"] == "postgresql://u:***@h/db"
    assert cfg.command.startswith("python -m bench --lines 1M")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore and posix_fadvise: Linux page cache")
def test_warm_reads_files_into_the_page_cache(tmp_path: Path) -> None:
    files = []
    for i in range(3):
        p = tmp_path / f"f{i}.jsonl"
        p.write_bytes(os.urandom(1 << 20))
        files.append(p)
    for p in files:  # written pages must reach the disk before the kernel will drop them
        with p.open("rb") as fh:
            os.fsync(fh.fileno())
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    before = page_cache_share(files)
    assert before is not None
    if _fs_type(tmp_path) not in ("tmpfs", "ramfs", "devtmpfs"):  # memory-backed files cannot leave the page cache
        assert before < 0.5
    w = warm(files)
    assert w["cached_before"] == pytest.approx(before, abs=0.01)
    assert page_cache_share(files) == 1.0


def _fs_type(path: Path) -> str:
    """The file system type of the mount that holds ``path`` (from /proc/self/mountinfo)."""
    best, fstype = "", ""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        mount, kind = fields[4], fields[fields.index("-") + 1]
        if str(path.resolve()).startswith(mount.rstrip("/") + "/") and len(mount) > len(best):
            best, fstype = mount, kind
    return fstype


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lines", "0"], "--lines 0: measure at least 1k lines"),
        (["--lines", "abc"], "not a line count: 'abc'"),
        (["--lines", "1k", "--repeat", "0"], "--repeat must be at least 1"),
        (["--lines", "1k", "--targets", "mysql"], "unknown target(s) ['mysql']"),
        (["--lines", "1k", "--incr-lines", "0"], "--incr-lines must be at least 1"),
        (["--lines", "1k", "--unit-size", "0"], "--unit-size '0' is not a size"),
        (["--lines", "1k", "--out", "/proc/results"], "--out /proc/results is not a writable directory"),
        # PostgreSQL asked for by name must answer: a run of it alone would otherwise measure nothing, exit 0.
        (["--lines", "1k", "--targets", "postgresql", "--pg-url", "postgresql://x@127.0.0.1:1/y"],
         "PostgreSQL was asked for: no PostgreSQL at postgresql://x@127.0.0.1:1/y"),
        (["--lines", "1k", "--pg-url", "http://x"], "PostgreSQL was asked for: no PostgreSQL at http://x"),
        (["--lines", "1k", "--pg-url", "postgresql://u:s3cret@127.0.0.1:1/y"], "no PostgreSQL at postgresql://u:***@"),
    ],
)
def test_bad_options_are_one_usage_error(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "s3cret" not in err


@pytest.mark.parametrize(
    "args_json, message",
    [
        ("{bad", "--args-json is not JSON"),
        ("[1]", "--args-json must be one JSON object"),
        ('{"archive": "/no/such/archive"}', "archive '/no/such/archive' is not a directory"),
    ],
)
def test_a_measurement_by_hand_with_bad_arguments_is_a_usage_error(
    args_json: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """bench/README.md shows the child commands to reproduce a number: a typo must not measure nothing."""
    from bench import child

    with pytest.raises(SystemExit) as exc:
        child.main(["parse-floor", "--args-json", args_json])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_a_failed_measured_run_fails_the_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A skipped target is a note (exit 0); an engine that failed while measured is exit 1."""
    import bench.harness

    notes = ["PostgreSQL skipped: no server"]
    monkeypatch.setattr(bench.harness, "run_bench", lambda cfg: {"notes": notes})
    argv = ["--lines", "1k", "--out", str(tmp_path / "r"), "--cache", str(tmp_path / "c")]
    assert bench.harness.main(argv) == 0
    notes.append("1k sqlite: a measured run failed: error: the target database failed")
    assert bench.harness.main(argv) == 1


def test_observer_bench_is_the_same_harness(tmp_path: Path) -> None:
    """``observer bench`` passes its options to the harness: its usage errors, and a run that records
    the command as it was typed."""
    from tests.support import cli

    r = cli("bench", "--lines", "0")
    assert r.returncode == 2 and "observer bench: error: --lines 0: measure at least 1k lines" in r.stderr
    r = cli("bench", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: observer bench") and "--lines" in r.stdout
    out = tmp_path / "out"
    argv = ["--lines", "20k", "--repeat", "1", "--targets", "sqlite", "--no-baselines", "--incr-lines", "2k",
            "--unit-size", "256KB", "--out", str(out), "--cache", str(tmp_path / "cache")]
    r = cli("bench", *argv)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["command"] == "observer bench " + " ".join(argv)
    t = res["sizes"][0]["targets"]["sqlite"]
    e2e = t["e2e"]
    _check_run(e2e)
    run = e2e["runs"][0]
    assert run["lines_read"] == run["loaded"] + run["duplicates"] + run["rejected"] > 0
    # --unit-size reaches every measured run, and the end-to-end one really commits in such units.
    measured = [r for m in ("e2e", "nothing_new", "incremental") for r in t[m]["runs"]]
    assert {r["unit_bytes"] for r in measured} == {256 * 1024}
    assert run["commits"] >= res["sizes"][0]["archive"]["jsonl_bytes"] / (256 * 1024) > 10
    assert "--unit-size 256KB" in run["command"]
    assert "Unit size: every `observer etl` run here commits at most 256KB" in (out / "results.md").read_text()


def _check_run(stat: dict, lines_min: int = 1) -> None:
    assert stat["n"] >= 1 and stat["runs"]
    assert stat["lines"] >= lines_min
    assert stat["seconds"]["median"] > 0
    assert stat["lines_per_s"]["median"] > 0
    assert stat["peak_rss_mb"]["median"] > 10
    # The measured process's own peak: ru_maxrss would count the harness's size at fork too.
    assert {r["rss_source"] for r in stat["runs"]} == {"VmHWM"}, stat["command"]
    assert stat["command"]


def _smoke(tmp_path: Path, target: str, pg_url: str | None = None) -> None:
    cfg = BenchConfig(
        sizes=[20_000], repeat=1, targets=[target], out=tmp_path / "out", cache=tmp_path / "cache",
        baseline_lines=2_000, incr_lines=2_000, pg_url=pg_url or "postgresql://unused@127.0.0.1:1/none",
        readme=tmp_path / "README.md", command="python -m bench --lines 20k --repeat 1",
    )
    run_bench(cfg)

    out = tmp_path / "out"
    for name in ("results.json", "results.md"):
        assert (out / name).stat().st_size > 0, name
    if importlib.util.find_spec("matplotlib") is not None:  # the chart needs the optional bench extra
        assert (out / "results.png").stat().st_size > 0
    res = json.loads((out / "results.json").read_text())
    assert {"command", "machine", "config", "sizes", "targets_check"} <= res.keys()
    assert res["machine"]["cores"] >= 1
    # The SQLite named is the one the engine loads through (ADBC's own), not Python's sqlite3 module's.
    assert res["machine"]["sqlite"] == bundled_sqlite_version()
    (size,) = res["sizes"]
    assert size["label"] == "20k" and size["archive"]["jsonl_bytes"] > 0
    _check_run(size["parse_floor"])
    t = size["targets"][target]
    e2e = t["e2e"]
    _check_run(e2e)
    run = e2e["runs"][0]
    assert run["lines_read"] > 0 and run["loaded"] > 0
    assert run["lines_read"] == run["loaded"] + run["duplicates"] + run["rejected"]
    assert set(e2e["stages"]) == {"scan", "normalize", "dedup", "stage", "load"}
    _check_run(t["ingest_floor"])
    tables = run["tables"]
    assert t["ingest_floor"]["lines"] == tables["scalp_ticks"]["inserted"] + tables["swing_snapshots"]["inserted"]
    (rnd,) = report.rounds(t)  # the end-to-end run and its floors, side by side
    assert rnd["e2e"]["seconds"] == run["seconds"] and rnd["parse"]["seconds"] == size["parse_floor"]["runs"][0]["seconds"]
    assert rnd["ratio"] == rnd["e2e"]["seconds"] / (rnd["parse"]["seconds"] + rnd["ingest"]["seconds"])
    assert floor_ratio(size, target) == rnd["ratio"]
    assert run["warm"]["seconds"] >= 0
    _check_run(t["incremental"])
    assert t["incremental"]["runs"][0]["loaded"] > 0
    # each timed hour goes to a day already staged: the day's first hour (_10) was loaded off the clock
    assert t["incremental"]["runs"][0]["new_file"].endswith("_11.jsonl")
    # the 10M goals are judged at 10M only
    assert [c["met"] for c in res["targets_check"] if "floor" in c["goal"]] == [None]
    nn = t["nothing_new"]["runs"][0]
    assert nn["lines_read"] == 0 and nn["loaded"] == 0
    for name in ("per_record", "dlt"):
        b = t["baselines"][name]
        if "skipped" in b:  # the optional bench extra is not installed
            continue
        _check_run(b)
        assert b["sample"] is True and b["lines"] <= 2_000
    goals = {c["goal"] for c in res["targets_check"]}
    assert any("nothing-new" in g for g in goals)
    md = (out / "results.md").read_text()
    assert "observer etl end to end" in md and "python -m bench --lines 20k" in md
    assert f"| 20k | {report.TARGET_NAME[target]} | 1 | {rnd['e2e']['seconds']:.2f} |" in md
    readme = (tmp_path / "README.md").read_text()
    assert "bench-results:start" in readme and "observer etl end to end" in readme


def test_smoke_sqlite(tmp_path: Path) -> None:
    _smoke(tmp_path, "sqlite")


def test_smoke_postgresql(tmp_path: Path, pg_url: str) -> None:
    # The harness creates (and drops) a fresh database per measured run through this server.
    _smoke(tmp_path, "postgresql", pg_url)


def test_units_probe_accounts_for_every_line_in_any_unit_size(tmp_path: Path) -> None:
    """The memory study's probe (``python -m bench.child units``): a run in small units with a small
    SQLite cache, then the held-back hours added one run each, read every line of the archive once."""
    from bench.child import units
    from bench.harness import ensure_archive

    archive, expected = ensure_archive(20_000, 7, tmp_path / "cache")
    res = units({"archive": str(archive), "work": str(tmp_path / "w"), "unit_mb": 0.5, "lookahead_mb": 0.5,
                 "sqlite_cache_mib": 2, "hold_last": 2})
    first, *added = res["runs"]
    assert [r["added"] for r in added] == sorted(p.name for p in archive.glob("assets/scalp/*.jsonl"))[-2:]
    assert all(r["lines_read"] > 0 and r["commits"] == 1 for r in added)
    assert first["commits"] > 16  # half-megabyte units: more commits than (kind, day) pairs
    assert sum(r["lines_read"] for r in res["runs"]) == expected["lines_total"] - expected["held_back"]
    assert res["peak_rss_mb"] > 10


def test_ingest_floor_loads_every_staged_row_in_any_batch_size(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The ingest floor reads partitions ahead in batches; a batch of one partition or of all of them
    puts the same rows in the database as the run staged."""
    from adbc_driver_sqlite import dbapi

    import bench.child
    from bench.harness import ensure_archive
    from tests.support import run

    archive, _ = ensure_archive(20_000, 7, tmp_path / "cache")
    summary = run(archive, f"sqlite:///{tmp_path}/e2e.db", tmp_path / "stg")
    staged = summary.tables["scalp_ticks"]["inserted"] + summary.tables["swing_snapshots"]["inserted"]
    # A batch of one partition, of all of them; and the key-order probe: the same rows into tables keyed
    # as the engine keys them, ticks date first.
    key = ["trade_date", "symbol", "event_time", "acc_volume"]
    for db, batch_bytes, probe in (("floor-1", 1, {}), ("floor-all", 1 << 30, {}), ("keyed", 1 << 30, {"key": key})):
        monkeypatch.setattr(bench.child, "FLOOR_BATCH_BYTES", batch_bytes)
        res = bench.child.ingest_floor({"staging": str(tmp_path / "stg"), "target": f"sqlite:///{tmp_path}/{db}.db", **probe})
        assert res["rows"] == staged and res["partitions"] > 2
        assert res["tables"] == ["scalp_ticks", "swing_snapshots"]
        with dbapi.connect(f"{tmp_path}/{db}.db") as conn, conn.cursor() as cur:
            cur.execute("SELECT (SELECT count(*) FROM floor_scalp_ticks) + (SELECT count(*) FROM floor_swing_snapshots)")
            assert cur.fetchone()[0] == staged
            if probe:
                cur.execute("SELECT name FROM pragma_table_info('floor_scalp_ticks') WHERE pk > 0 ORDER BY pk")
                assert [r[0] for r in cur.fetchall()] == key
                cur.execute("SELECT sql FROM sqlite_master WHERE name = 'floor_scalp_ticks'")
                assert cur.fetchone()[0].endswith("WITHOUT ROWID")


def test_the_parse_floor_does_not_count_a_failed_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file with a bad line fails ``read_ndjson`` whole; finding the line is the ETL's work, so the
    failed parse is off the clock. It was on it: 13-24 % more floor, and a kinder ratio to it."""
    import polars as pl

    from bench import child
    from tests.support import tick, write_lines

    write_lines(tmp_path / "assets/scalp/20260130_13.jsonl", [tick(acc=1), "{bad", tick(acc=2)])
    write_lines(tmp_path / "assets/scalp/20260130_14.jsonl", [tick(acc=3, ts="2026-01-30T14:00:00+09:00")])
    clock = [0.0]
    real = pl.read_ndjson

    def read_ndjson(*a: object, **k: object) -> pl.DataFrame:
        try:
            df = real(*a, **k)
        except Exception:
            clock[0] += 100.0  # a failed parse: 100 s on the fake clock
            raise
        clock[0] += 1.0  # a parse that works: 1 s
        return df

    monkeypatch.setattr(pl, "read_ndjson", read_ndjson)
    monkeypatch.setattr(child.time, "perf_counter", lambda: clock[0])
    got = child.parse_floor({"archive": str(tmp_path)})
    assert (got["cleaned_files"], got["rows"]) == (1, 3)
    assert got["seconds"] == 2.0  # two parses that work; the failed one is not counted
