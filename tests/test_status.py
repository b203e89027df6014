"""``observer status``: what the database holds, read without changing it, on both targets."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import pytest

from engine.load import Target, TargetError, parse_target
from engine.status import read_status
from tests.support import cli, db_snapshot, rows, run, tick, write_lines


def _files(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def test_status_reports_what_the_runs_committed(generated, tmp_path: Path, target_url: str) -> None:  # type: ignore[no-untyped-def]
    root, expected = generated
    holidays = tmp_path / "holidays.txt"
    holidays.write_text("2026-01-28\n")
    first = run(root, target_url, tmp_path / "staging", holidays=holidays).to_dict()
    run(root, target_url, tmp_path / "staging", holidays=holidays)  # nothing new: a second run of its own
    before = db_snapshot(target_url)

    staged_before = _tree(tmp_path / "staging")
    st = read_status(target_url, runs=1, staging=tmp_path / "staging").to_dict()

    assert db_snapshot(target_url) == before and _tree(tmp_path / "staging") == staged_before
    (scope,) = st["staging"]["scopes"]
    assert (scope["scope"], scope["in_database"], scope["pending"]) == ("all", True, [])
    assert scope["newest_commit"]["run_id"] == first["run_id"] and scope["newest_commit"]["seq"] == first["commits"]
    assert scope["files"] == expected.files["scalp"] + expected.files["swing"] + expected.files["universe"]
    for table, column in (("scalp_ticks", "trade_date"), ("swing_snapshots", "trade_date"), ("market_universe", "date")):
        days = rows(target_url, f"SELECT count(*) FROM (SELECT DISTINCT market, {column} FROM {table}) AS d")[0][0]
        assert st["staging"]["tables"][table]["partitions"] == days > 0, table
    assert st["tables"] == {
        "scalp_ticks": expected.scalp_ticks,
        "swing_snapshots": expected.swing_snapshots,
        "market_universe": sum(len(s) for s in expected.universe.values()),
        "etl_rejects": len(expected.rejects),
    }
    assert st["rejects_by_reason"] == dict(sorted(expected.reject_counts.items(), key=lambda kv: (-kv[1], kv[0])))
    assert st["runs_by_status"] == {"succeeded": 2}
    (newest,) = st["runs"]  # --runs 1: only the newest, the run with nothing new
    assert (newest["status"], newest["lines_read"], newest["commits"]) == ("succeeded", 0, 0)
    assert newest["run_id"] != first["run_id"]
    everything = read_status(target_url).to_dict()["runs"]
    assert [r["run_id"] for r in everything][1] == first["run_id"]
    assert {k: everything[1][k] for k in ("lines_read", "loaded", "duplicates", "rejected", "held_back")} == {
        k: first[k] for k in ("lines_read", "loaded", "duplicates", "rejected", "held_back")
    }
    marks = rows(target_url, "SELECT source_type, market, last_processed_file, run_id FROM etl_watermark")
    assert sorted((w["source_type"], w["market"], w["last_processed_file"], w["run_id"]) for w in st["watermarks"]) == sorted(
        tuple(str(v) for v in r) for r in marks
    )
    assert {w["source_type"] for w in st["watermarks"]} == {"scalp", "swing", "universe"}
    for w in st["watermarks"]:
        assert w["last_processed_ts"].endswith("+00:00") and w["last_processed_ts"][:4] == "2026"
    assert everything[1]["started_at"] < everything[1]["finished_at"] <= everything[0]["started_at"]
    assert st["holidays"] == {"kr_stocks": [date(2026, 1, 28).isoformat()]}
    assert set(st["schema_versions"]) >= {"scalp_ticks", "swing_snapshots", "market_universe", "etl_runs"}


def test_a_read_only_target_refuses_writes(tmp_path: Path, target_url: str) -> None:
    write_lines(tmp_path / "archive/assets/scalp/20260130_13.jsonl", [tick(acc=1)])
    run(tmp_path / "archive", target_url, tmp_path / "staging")
    t = Target(parse_target(target_url), read_only=True)
    try:
        with pytest.raises(Exception, match="(?i)read.?only"):
            t.rows("CREATE TABLE status_wrote (a integer)")
    finally:
        t.close()
    assert rows(target_url, "SELECT count(*) FROM scalp_ticks") == [(1,)]


def test_everything_status_reads_is_one_snapshot(tmp_path: Path, target_url: str) -> None:
    """A run that commits while status reads shows in none of what it reads (read_status reads in one)."""
    write_lines(tmp_path / "archive/assets/scalp/20260130_13.jsonl", [tick(acc=1), tick(acc=2)])
    run(tmp_path / "archive", target_url, tmp_path / "staging")
    t = Target(parse_target(target_url), read_only=True)
    try:
        with t.snapshot():
            assert t.count("scalp_ticks") == 2
            rows(target_url, "DELETE FROM scalp_ticks")  # another connection commits meanwhile
            assert t.count("scalp_ticks") == 2
        assert t.count("scalp_ticks") == 0
    finally:
        t.close()


def test_status_leaves_an_sqlite_file_as_it_was(tmp_path: Path) -> None:
    """Not even the journal mode: a read-only connection never switches the file to WAL or back."""
    url = f"sqlite:///{tmp_path / 'db' / 'trading.db'}"
    (tmp_path / "db").mkdir()
    write_lines(tmp_path / "archive/assets/scalp/20260130_13.jsonl", [tick(acc=1), "garbage"])
    run(tmp_path / "archive", url, tmp_path / "staging")
    assert rows(url, "PRAGMA journal_mode=delete") == [("delete",)]  # as a copy made by another tool may be
    before = _files(tmp_path / "db")
    r = cli("status", "--target", url)
    assert r.returncode == 0, r.stderr
    assert _files(tmp_path / "db") == before
    assert "scalp_ticks 1" in r.stdout and "invalid_json 1" in r.stdout
    assert f"on {tmp_path / 'archive'}: 2 lines read = 1 loaded + 0 duplicates + 1 rejected" in r.stdout
    # The watermark in market time: the tick received at 13:05:12.844213 KST (04:05:12.844213 UTC in --json).
    assert "scalp kr_stocks: 2026-01-30 13:05:12 KST, assets/scalp/20260130_13.jsonl" in r.stdout
    assert read_status(url).watermarks[0]["last_processed_ts"] == "2026-01-30T04:05:12.844213+00:00"


def test_the_cli_prints_the_same_status_as_json(generated, tmp_path: Path, target_url: str) -> None:  # type: ignore[no-untyped-def]
    root, _ = generated
    assert cli("etl", "--source", str(root), "--target", target_url, "--staging", str(tmp_path / "s"), "--json").returncode == 0
    r = cli("status", "--target", target_url, "--json", "--runs", "3")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert json.loads(r.stdout) == read_status(target_url, runs=3).to_dict()
    human = cli("status", "--target", target_url)
    assert human.returncode == 0, human.stderr
    assert "runs: 1 succeeded; the newest:" in human.stdout and "watermarks:" in human.stdout
    assert json.loads(r.stdout)["runs"][0]["source"] == str(root)
    (tmp_path / "observer.toml").write_text(f'[etl]\ntarget = "db"\n[targets]\ndb = "{target_url}"\n')
    named = cli("status", "--json", "--runs", "3", cwd=tmp_path)  # the target named as for observer etl
    assert named.returncode == 0 and json.loads(named.stdout) == json.loads(r.stdout), named.stderr


def test_a_target_that_cannot_be_read_is_one_sentence_and_nothing_is_created(tmp_path: Path, pg_url: str) -> None:
    missing = tmp_path / "missing.db"
    r = cli("status", "--target", f"sqlite:///{missing}")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == f"error: cannot open sqlite:///{missing}: {missing} does not exist"
    assert not missing.exists()

    other = tmp_path / "other.db"  # a database, but not one observer-etl loaded into
    t = Target(parse_target(f"sqlite:///{other}"))
    t.rows("CREATE TABLE unrelated (a integer)")
    t.close()
    r = cli("status", "--target", f"sqlite:///{other}")
    assert r.returncode == 2, r.stdout
    assert "holds no observer-etl tables (no etl_runs): nothing was loaded into it yet" in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr

    r = cli("status", "--target", pg_url)  # a fresh, empty database
    assert r.returncode == 2 and "holds no observer-etl tables" in r.stderr and r.stderr.count("\n") == 1
    wrong = pg_url.rsplit("/", 1)[0] + "/no_such_database_here"
    r = cli("status", "--target", wrong)
    assert r.returncode == 2 and r.stderr.startswith("error: cannot connect to") and r.stderr.count("\n") == 1
    with pytest.raises(TargetError, match="does not exist"):
        read_status(f"sqlite:///{missing}")


def test_a_table_it_may_not_read_is_one_sentence(tmp_path: Path, pg_url: str) -> None:
    """A PostgreSQL role without rights on the tables (a reporting user): the server's reason, no traceback."""
    import secrets
    from urllib.parse import urlsplit

    write_lines(tmp_path / "archive/assets/scalp/20260130_13.jsonl", [tick(acc=1)])
    run(tmp_path / "archive", pg_url, tmp_path / "staging")
    role = f"etl_reader_{secrets.token_hex(3)}"
    rows(pg_url, f"CREATE ROLE {role} LOGIN")
    try:
        parts = urlsplit(pg_url)
        as_role = f"postgresql://{role}@{parts.hostname}:{parts.port}{parts.path}"
        r = cli("status", "--target", as_role)
        assert r.returncode == 2 and r.stdout == "", r.stdout
        assert r.stderr.startswith(f"error: cannot read {as_role}: ") and "permission denied" in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1
    finally:
        rows(pg_url, f"DROP OWNED BY {role}")
        rows(pg_url, f"DROP ROLE {role}")


def test_status_help_says_what_each_option_takes() -> None:
    r = cli("status", "--help", env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    for option, metavar in [("--target", "URL|NAME"), ("--config", "FILE"), ("--runs", "N")]:
        assert f"{option}" in r.stdout and metavar in r.stdout, (option, r.stdout)
    assert "a name in [targets] of observer.toml" in r.stdout and "Changes nothing" in r.stdout
    assert "status" in cli("--help", env={"COLUMNS": "200"}).stdout


def test_a_database_without_a_watermark_yet(tmp_path: Path, target_url: str) -> None:
    """A run over an archive with nothing in it commits its run and no watermark (helper 41: SQLite's
    driver typed the empty watermark's times Int64 and status died in a traceback)."""
    (tmp_path / "archive").mkdir()
    run(tmp_path / "archive", target_url, tmp_path / "staging")
    st = read_status(target_url).to_dict()
    assert (st["watermarks"], st["runs_by_status"]) == ([], {"succeeded": 1})
    r = cli("status", "--target", target_url)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "watermarks: none yet" in r.stdout and "rows: scalp_ticks 0, swing_snapshots 0" in r.stdout


def test_a_load_holding_the_lock_is_one_sentence_within_seconds(tmp_path: Path) -> None:
    """A first load keeps SQLite readers out while it commits: status waits its own few seconds, not
    the loader's two minutes, and says why."""
    import subprocess
    import sys
    import time

    from engine.status import BUSY_TIMEOUT_MS
    from tests.support import REPO

    db = tmp_path / "trading.db"
    write_lines(tmp_path / "archive/assets/scalp/20260130_13.jsonl", [tick(acc=1)])
    run(tmp_path / "archive", f"sqlite:///{db}", tmp_path / "staging")
    assert rows(f"sqlite:///{db}", "PRAGMA journal_mode=delete") == [("delete",)]  # as during a first load
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            f"import sys, time; sys.path.insert(0, {str(REPO)!r}); from engine.load import _Session; "
            f"s = _Session('sqlite', {str(db)!r}); s.query('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(60)"
        )],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        r = cli("status", "--target", f"sqlite:///{db}")
        waited = time.monotonic() - t0
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode == 2, r.stdout
    assert r.stderr.strip() == (
        f"error: cannot read sqlite:///{db}: it is locked by a load in progress (a first load into empty tables "
        "keeps readers out while it commits): try again"
    )
    assert BUSY_TIMEOUT_MS / 1000 <= waited < 30


def test_what_sqlite_says_to_a_reader_becomes_what_to_do(tmp_path: Path) -> None:
    """The two ways a read-only SQLite reader is told it would have to write (the reviewer's
    reproducers need a non-root user or a killed writer's hot journal), and anything else as it is."""
    from engine.load import sqlite_reader_why

    db = tmp_path / "trading.db"
    ro = "attempt to write a readonly database"
    assert sqlite_reader_why(ro, db) == (
        f"it is in WAL mode, and a reader must create trading.db-shm beside it: {tmp_path} must be writable for "
        "this user (or read it as the user that loads)"
    )
    (tmp_path / "trading.db-journal").write_bytes(b"\0" * 512)
    assert sqlite_reader_why(ro, db).startswith("a killed load left trading.db-journal beside it")
    assert sqlite_reader_why("disk I/O error", db) == "disk I/O error"


def test_a_path_with_brackets_and_too_many_runs(tmp_path: Path) -> None:
    """Rich markup in a path is printed as it is (helper 41: 'a[/]b.db' raised a MarkupError)."""
    folder = tmp_path / "a["
    folder.mkdir()
    url = f"sqlite:///{folder / ']b [red]x[bold].db'}"
    write_lines(tmp_path / "archive/assets/scalp/20260130_13.jsonl", [tick(acc=1)])
    run(tmp_path / "archive", url, tmp_path / "staging")
    r = cli("status", "--target", url)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"observer status · {url}"
    r = cli("status", "--target", url, "--runs", "10001")
    assert r.returncode == 2 and "less than or equal to 10000" in r.stderr and "Traceback" not in r.stderr


def test_a_run_records_its_archive_as_an_absolute_path(tmp_path: Path) -> None:
    """etl_runs.source (and status's runs) name the archive wherever the run was started from: a relative
    --source was stored as typed."""
    work = tmp_path / "work"
    write_lines(work / "archive/assets/scalp/20260130_13.jsonl", [tick(acc=1)])
    r = cli("etl", "--source", "archive", "--target", "sqlite:///t.db", "--staging", "st", cwd=work)
    assert r.returncode == 0, r.stderr
    assert rows(f"sqlite:///{work / 't.db'}", "SELECT source FROM etl_runs") == [(str(work / "archive"),)]
    assert read_status(f"sqlite:///{work / 't.db'}").runs[0]["source"] == str(work / "archive")


def test_status_says_when_staging_and_database_disagree(tmp_path: Path, target_url: str) -> None:
    """A staging directory of another database, and an interrupted commit, are reported as they are:
    status settles nothing (the next run of the scope does, asking the database)."""
    write_lines(tmp_path / "archive/assets/scalp/20260130_13.jsonl", [tick(acc=1)])
    run(tmp_path / "archive", target_url, tmp_path / "staging")
    other = f"sqlite:///{tmp_path / 'other.db'}"
    run(tmp_path / "archive", other, tmp_path / "other-staging")
    st = read_status(target_url, staging=tmp_path / "other-staging").to_dict()
    assert st["staging"]["scopes"][0]["in_database"] is False
    r = cli("status", "--target", target_url, "--staging", str(tmp_path / "other-staging"))
    assert r.returncode == 0, r.stderr
    assert "NOT in the database: the staging directory of another database, which observer etl refuses" in r.stdout

    scope_dir = tmp_path / "staging" / "_manifest" / "scope=all"
    (scope_dir / "pending-20991231T000000000000Z-abcdef-000001").mkdir()
    before = _tree(tmp_path / "staging")
    r = cli("status", "--target", target_url, "--staging", str(tmp_path / "staging"))
    assert r.returncode == 0, r.stderr
    assert "interrupted commits (the next run of the scope settles them): pending-20991231T000000000000Z-abcdef-000001" in r.stdout
    assert _tree(tmp_path / "staging") == before  # still there: status changes nothing


def test_the_staging_directory_status_reads(tmp_path: Path) -> None:
    """--staging must exist; without it, the directory observer etl would use is shown if it exists."""
    work = tmp_path / "work"
    write_lines(work / "archive/assets/scalp/20260130_13.jsonl", [tick(acc=1)])
    assert cli("etl", "--source", "archive", "--target", "sqlite:///t.db", cwd=work).returncode == 0  # default staging
    r = cli("status", "--target", "sqlite:///t.db", cwd=work)
    assert r.returncode == 0 and f"staging {work / 'observer-staging'}:" in r.stdout and "in the database" in r.stdout, r.stdout
    r = cli("status", "--target", "sqlite:///t.db", "--staging", "elsewhere", cwd=work)
    assert (r.returncode, r.stderr.strip()) == (2, "error: staging directory elsewhere does not exist")
    r = cli("status", "--target", "sqlite:///t.db", "--staging", "archive", cwd=work)  # a folder, but no staging
    assert (r.returncode, r.stderr.strip()) == (
        2, "error: archive is not a staging directory of observer etl: it has no _manifest folder"
    )
    (work / "observer-staging").rename(work / "moved")
    r = cli("status", "--target", "sqlite:///t.db", cwd=work)
    assert r.returncode == 0 and not any(line.startswith("staging ") for line in r.stdout.splitlines()), r.stdout


@pytest.mark.parametrize("damage", ["unknown partition folder", "table folder is a file", "manifest names no commit"])
def test_a_staging_directory_it_cannot_read_whole_is_one_sentence(tmp_path: Path, damage: str) -> None:
    """Counts that skipped what they could not read would look exact (helper 42): each is one sentence
    naming the staging directory, not the database."""
    import polars as pl

    url, staging = f"sqlite:///{tmp_path / 't.db'}", tmp_path / "st"
    write_lines(tmp_path / "archive/assets/scalp/20260130_13.jsonl", [tick(acc=1)])
    run(tmp_path / "archive", url, staging)
    if damage == "unknown partition folder":
        (staging / "scalp_ticks/market=kr_stocks/trade_date=oops").mkdir()
        for part in (staging / "scalp_ticks/market=kr_stocks/trade_date=2026-01-30").iterdir():
            (staging / "scalp_ticks/market=kr_stocks/trade_date=oops" / part.name).write_bytes(part.read_bytes())
        why = "Invalid isoformat string: 'oops'"
    elif damage == "table folder is a file":
        (staging / "swing_snapshots").write_text("")
        why = f"Not a directory: {staging / 'swing_snapshots'}"
    else:
        files = staging / "_manifest/scope=all/files.parquet"
        pl.read_parquet(files).with_columns(run_id=pl.lit(None, pl.String)).write_parquet(files)
        why = "a manifest row names no commit (run_id, commit_seq): it is not a manifest observer-etl wrote"
    before = _tree(staging)
    r = cli("status", "--target", url, "--staging", str(staging))
    assert r.returncode == 2 and r.stdout == "", r.stdout
    assert r.stderr.strip() == f"error: cannot read the staging directory {staging}: {why}"
    assert _tree(staging) == before


def test_a_run_committing_while_status_reads_is_never_a_disagreement(generated, tmp_path: Path, target_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The manifest is read before the database: a run commits to the database first and promotes its
    manifest after, so whatever commit status finds in the manifest, the database it reads has (helper 42
    found 'NOT in the database' for a database's own staging, read the other way round)."""
    import shutil

    import engine.status as status

    shutil.copytree(generated[0], tmp_path / "archive")  # every table gets rows: the second run changes no index
    run(tmp_path / "archive", target_url, tmp_path / "staging")
    write_lines(tmp_path / "archive/assets/scalp/20260302_10.jsonl", [tick(acc=2, ts="2026-03-02T10:00:01+09:00")])
    real = status._read

    def a_run_commits_meanwhile(target, runs):  # type: ignore[no-untyped-def]
        state = real(target, runs)  # the database's snapshot is taken by now
        run(tmp_path / "archive", target_url, tmp_path / "staging")
        return state

    monkeypatch.setattr(status, "_read", a_run_commits_meanwhile)
    st = read_status(target_url, staging=tmp_path / "staging")
    assert [s.in_database for s in st.staging.scopes] == [True]  # type: ignore[union-attr]


def test_an_archive_given_two_ways_is_recorded_as_one(tmp_path: Path) -> None:
    work = tmp_path / "work"
    write_lines(work / "archive/assets/scalp/20260130_13.jsonl", [tick(acc=1)])
    (work / "sub").mkdir()
    assert cli("etl", "--source", "../archive/.", "--target", "sqlite:///../t.db", "--staging", "../st", cwd=work / "sub").returncode == 0
    assert rows(f"sqlite:///{work / 't.db'}", "SELECT source FROM etl_runs") == [(str(work / "archive"),)]
