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
    for seq in (1, 3, 7):
        r = cli(
            "etl", "--source", str(root), "--target", second_target, "--staging", str(staging), "--json",
            env={"OBSERVER_ETL_CRASH_AT": f"{point}@{seq}"},
        )
        assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    assert_agree(root, second_target, staging, want)


def test_kill_at_random_moments(generated, target_url: str, second_target: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, _ = generated
    want = clean_state(root, target_url, tmp_path / "ref-stg")
    staging = tmp_path / "stg"
    rnd = random.Random(20260130)
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "cli.py"), "etl", "--source", str(root), "--target", second_target,
             "--staging", str(staging), "--json"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(rnd.uniform(0.3, 2.5))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert_agree(root, second_target, staging, want)
