"""kill -9 at any point, then run again: exactly what one clean run leaves, on every target."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.pipeline import CRASH_POINTS
from tests.support import REPO, cli, db_snapshot, staged_snapshot


def clean_state(root: Path, url: str, staging: Path) -> tuple[dict, dict]:
    r = cli("etl", "--source", str(root), "--target", url, "--staging", str(staging), "--json")
    assert r.returncode == 0, r.stderr
    return db_snapshot(url), staged_snapshot(staging)


def assert_agree(root: Path, url: str, staging: Path, want: tuple[dict, dict]) -> None:
    r = cli("etl", "--source", str(root), "--target", url, "--staging", str(staging), "--json")
    assert r.returncode == 0, r.stderr
    assert db_snapshot(url) == want[0]
    assert staged_snapshot(staging) == want[1]
    assert not list((staging / "_manifest").glob("*/pending-*")), "a pending commit was left behind"
    again = cli("etl", "--source", str(root), "--target", url, "--staging", str(staging), "--json")
    assert '"lines_read": 0' in again.stdout


@pytest.fixture
def second_target(target_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The crashed run's own database, of the same kind as the reference one."""
    if target_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'crashed.db'}"
    else:
        from tests.conftest import pg_database_url

        yield from pg_database_url()


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_at_each_point_of_the_commit_protocol(
    point: str, generated, target_url: str, second_target: str, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    root, _ = generated
    want = clean_state(root, target_url, tmp_path / "ref-stg")
    staging = tmp_path / "stg"
    # Each run is killed at its own nth commit. The archive takes 7 (a day's scalp and swing units share
    # one, then the universe documents): after a point past the database commit the third run's third
    # is the archive's last, the universe commit.
    for seq in (1, 3, 3):
        r = cli(
            "etl", "--source", str(root), "--target", second_target, "--staging", str(staging), "--json",
            env={"OBSERVER_ETL_CRASH_AT": f"{point}@{seq}"},
        )
        assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    assert_agree(root, second_target, staging, want)


def test_kill_at_random_moments(big_archive: Path, target_url: str, second_target: str, tmp_path: Path) -> None:
    """Runs of many small commits, each killed at a random moment after it has made one: in a commit,
    between two, in the read ahead. (Killed after a random time from its start instead, every run of the
    small archive had ended before its kill, and the test checked nothing.)"""
    root = big_archive
    want = clean_state(root, target_url, tmp_path / "ref-stg")
    staging = tmp_path / "stg"
    manifest = staging / "_manifest/scope=all/files.parquet"
    rnd = random.Random(20260130)
    killed = 0
    for _ in range(6):
        before = manifest.stat().st_mtime_ns if manifest.exists() else None
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "cli.py"), "etl", "--source", str(root), "--target", second_target,
             "--staging", str(staging), "--unit-size", "256KB", "--json"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:  # until this run has promoted a commit
            if manifest.exists() and manifest.stat().st_mtime_ns != before:
                break
            time.sleep(0.002)
        time.sleep(rnd.uniform(0.0, 0.2))  # (161 commits of ~30 ms here: six kills take about a third)
        os.kill(proc.pid, signal.SIGKILL)
        killed += proc.wait() == -signal.SIGKILL
    assert killed == 6, "a run ended before its kill: the archive is too small for the test"
    assert_agree(root, second_target, staging, want)


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_during_a_commit_that_rewrites_one_staged_part(
    point: str, target_url: str, second_target: str, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """A day staged as three hourly parts; the run that brings a late first-hour trade (its commit
    rewrites the first part and obsoletes it) is killed at each point of the protocol; run again, the
    staging and the database are those of one clean run."""
    from tests.support import tick, write_lines

    root, staging = tmp_path / "archive", tmp_path / "stg"
    for hour in (9, 10, 11):
        write_lines(root / f"assets/scalp/20260130_{hour:02d}.jsonl", [
            tick(ts=f"2026-01-30T{hour:02d}:05:10.5+09:00", execution_time=f"{hour:02d}0510", acc=hour * 100),
            tick(ts=f"2026-01-30T{hour:02d}:05:12.5+09:00", execution_time=f"{hour:02d}0512", acc=hour * 100 + 60),
        ])
        assert cli("etl", "--source", str(root), "--target", second_target, "--staging", str(staging)).returncode == 0
    write_lines(root / "assets/scalp/20260130_12.jsonl", [tick(ts="2026-01-30T09:05:11.5+09:00", execution_time="090511", acc=930)])
    want = clean_state(root, target_url, tmp_path / "ref-stg")
    r = cli("etl", "--source", str(root), "--target", second_target, "--staging", str(staging), "--json",
            env={"OBSERVER_ETL_CRASH_AT": f"{point}@1"})
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    assert_agree(root, second_target, staging, want)
    (part_dir,) = (staging / "scalp_ticks").glob("market=*/trade_date=2026-01-30")
    assert len(list(part_dir.glob("part-*.parquet"))) == 3  # the first hour's part replaced, not added to


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_during_the_commit_of_universe_documents(
    point: str, generated, target_url: str, second_target: str, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """A run's universe documents, a rejected one among them, go in one commit: killed at each point of it
    and run again, the tables and the staging are those of one clean run."""
    import shutil

    src, _ = generated
    root = tmp_path / "archive"
    shutil.copytree(src / "universe", root / "universe")
    (root / "universe/20260201_kr_stocks.json").write_text('{"metadata": {"date": "2026-02-01"}, "symbols": [')
    want = clean_state(root, target_url, tmp_path / "ref-stg")
    assert want[0]["market_universe"] and want[0]["etl_rejects"]
    staging = tmp_path / "stg"
    r = cli("etl", "--source", str(root), "--target", second_target, "--staging", str(staging), "--json",
            env={"OBSERVER_ETL_CRASH_AT": f"{point}@1"})
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    assert_agree(root, second_target, staging, want)


def test_kill_between_the_chunks_of_a_file(generated, target_url: str, second_target: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Files read in chunks of a few kB (``--unit-size 4KB``), one commit each, killed after chunks of one
    file have committed and before the rest have; run again with whole files: it resumes at the chunk's
    line, as one clean run. Units this small spill their rejects (past 256 bytes): a killed run leaves
    its spill files, and the next run of the scope clears them."""
    root, _ = generated
    want = clean_state(root, target_url, tmp_path / "ref-stg")
    staging = tmp_path / "stg"
    from staging.manifest import load

    part_way = []
    for point, seq in (("promoted", 1), ("parts_written", 4), ("db_committed", 6)):
        r = cli("etl", "--source", str(root), "--target", second_target, "--staging", str(staging), "--json",
                "--unit-size", "4KB", env={"OBSERVER_ETL_CRASH_AT": f"{point}@{seq}"})
        assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
        part_way += [
            f["path"] for f in load(staging, "all").iter_rows(named=True) if f["size"] < (root / f["path"]).stat().st_size
        ]
    assert part_way, "the kills left no file read part-way: the test would not test a resume between chunks"

    def spills() -> list[Path]:
        return [p for p in (staging / "_spill").rglob("*") if p.is_file()]

    assert spills(), "the kills left no spill file: the test would not test that the next run clears them"
    assert_agree(root, second_target, staging, want)
    assert spills() == []


@pytest.mark.parametrize("with_txn", [True, False])
def test_a_promote_killed_half_way_is_finished_not_undone(
    with_txn: bool, generated, target_url: str, second_target: str, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """The database has the commit; the promote was killed after the manifest moved into place, or while
    its pending directory was being removed (``txn.json`` gone, the directory not yet). The next run must
    finish that promote: undoing it would delete parts whose rows the database holds."""
    root, _ = generated
    want = clean_state(root, target_url, tmp_path / "ref-stg")
    staging = tmp_path / "stg"
    r = cli("etl", "--source", str(root), "--target", second_target, "--staging", str(staging), "--json",
            env={"OBSERVER_ETL_CRASH_AT": "obsolete_removed@3"})
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    (pending,) = (staging / "_manifest").glob("*/pending-*")
    assert not (pending / "files.parquet").exists()  # already the scope's manifest
    if not with_txn:
        (pending / "txn.json").unlink()
    assert_agree(root, second_target, staging, want)


def test_a_market_runs_killed_commit_is_settled_by_an_all_markets_run(
    generated, target_url: str, second_target: str, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """Scopes share partition directories. A ``--market`` run killed with its parts written and its
    commit not in the database must not leave those parts for an all-markets run to take as staged:
    that run would count the lines as duplicates and never load them."""
    root, _ = generated
    want = clean_state(root, target_url, tmp_path / "ref-stg")
    staging = tmp_path / "stg"
    r = cli("etl", "--source", str(root), "--target", second_target, "--staging", str(staging), "--json",
            "--market", "kr_stocks", env={"OBSERVER_ETL_CRASH_AT": "pending_written@1"})
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    assert list((staging / "_manifest").glob("scope=kr_stocks/pending-*"))
    assert_agree(root, second_target, staging, want)


def test_an_all_markets_runs_killed_commit_is_settled_by_a_market_run(
    generated, target_url: str, second_target: str, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """The other way round: an all-markets run killed mid-commit, then only ``--market`` runs."""
    root, _ = generated
    r = cli("etl", "--source", str(root), "--target", target_url, "--staging", str(tmp_path / "ref-stg"), "--json",
            "--market", "kr_stocks")
    assert r.returncode == 0, r.stderr
    want = db_snapshot(target_url), staged_snapshot(tmp_path / "ref-stg")
    staging = tmp_path / "stg"
    r = cli("etl", "--source", str(root), "--target", second_target, "--staging", str(staging), "--json",
            env={"OBSERVER_ETL_CRASH_AT": "pending_written@1"})
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    r = cli("etl", "--source", str(root), "--target", second_target, "--staging", str(staging), "--json",
            "--market", "kr_stocks")
    assert r.returncode == 0, r.stderr
    assert db_snapshot(second_target) == want[0]
    assert staged_snapshot(staging) == want[1]
    assert not list((staging / "_manifest").glob("*/pending-*")), "a pending commit was left behind"


@pytest.mark.parametrize("then", ["the same list", "the list before"])
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_during_the_commit_that_flags_loaded_rows_again(
    point: str, then: str, target_url: str, second_target: str, tmp_path: Path
) -> None:
    """A holiday added to the list: the next run's first commit flags that day's loaded rows again. Killed at
    each point of that commit, then run with the same list, or with the list before (the holiday taken
    back, whether or not the killed run's commit reached the database): the tables and the staging are those
    of one clean run with that list. (A killed run's list must be on record: its rows carry it.)"""
    from tests.support import swing, tick, write_lines

    root, staging = tmp_path / "archive", tmp_path / "stg"
    write_lines(root / "assets/scalp/20260130_13.jsonl", [tick(acc=1), tick(acc=2, execution_time=None)])
    write_lines(root / "assets/swing/20260130.jsonl", [swing()])
    write_lines(root / "assets/scalp/20260129_13.jsonl", [tick(ts="2026-01-29T13:05:12+09:00", acc=1)])
    before, added = tmp_path / "before.txt", tmp_path / "added.txt"
    before.write_text("2026-02-16\n")
    added.write_text("2026-02-16\n2026-01-30\n")
    final = added if then == "the same list" else before

    def etl(url: str, stg: Path, holidays: Path, crash: str | None = None) -> subprocess.CompletedProcess[str]:
        return cli("etl", "--source", str(root), "--target", url, "--staging", str(stg), "--holidays", str(holidays),
                   "--json", env={"OBSERVER_ETL_CRASH_AT": crash} if crash else None)

    assert etl(target_url, tmp_path / "ref-stg", final).returncode == 0
    want = db_snapshot(target_url), staged_snapshot(tmp_path / "ref-stg")
    assert etl(second_target, staging, before).returncode == 0
    r = etl(second_target, staging, added, crash=f"{point}@1")
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    r = etl(second_target, staging, final)
    assert r.returncode == 0, r.stderr
    assert db_snapshot(second_target) == want[0]
    assert staged_snapshot(staging) == want[1]
    assert not list((staging / "_manifest").glob("*/pending-*")), "a pending commit was left behind"
