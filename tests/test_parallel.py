"""Parallel per-market runs: at the same time, same target and staging, the database of one full run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl

from engine.load import Target, parse_target
from tests.support import REPO, db_snapshot, run, staged_snapshot


def security_master(root: Path, work: Path) -> Path:
    """Every symbol a plain run loads, assigned to KOSPI or KOSDAQ alternately."""
    url = f"sqlite:///{work / 'symbols.db'}"
    run(root, url, work / "symbols-stg")
    t = Target(parse_target(url))
    try:
        symbols = sorted(
            {r[0] for name in ("scalp_ticks", "swing_snapshots", "market_universe") for r in t._exec(f"SELECT DISTINCT symbol FROM {name}")}
        )
    finally:
        t.close()
    path = work / "master.csv"
    markets = ["KOSPI" if i % 2 == 0 else "KOSDAQ" for i in range(len(symbols))]
    pl.DataFrame({"symbol": symbols, "market": markets}).write_csv(path)
    return path


def test_two_markets_at_once_equal_one_full_run(generated, target_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, _ = generated
    master = security_master(root, tmp_path)
    ref_url = target_url
    run(root, ref_url, tmp_path / "ref-stg", security_master=master)
    want_db, want_staged = db_snapshot(ref_url), staged_snapshot(tmp_path / "ref-stg")
    assert {r[1] for r in want_db["scalp_ticks"]} == {"KOSPI", "KOSDAQ"}

    if target_url.startswith("sqlite"):
        par_url = f"sqlite:///{tmp_path / 'parallel.db'}"
        cleanup = None
    else:
        from tests.conftest import pg_database_url

        cleanup = pg_database_url()
        par_url = next(cleanup)
    try:
        staging = tmp_path / "stg"
        procs = [
            subprocess.Popen(
                [sys.executable, str(REPO / "cli.py"), "etl", "--source", str(root), "--target", par_url,
                 "--staging", str(staging), "--market", market, "--security-master", str(master), "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for market in ("KOSPI", "KOSDAQ")
        ]
        outs = [p.communicate(timeout=600) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, err
            # each market's run appends its own rows: the other's rejects are no sign of a reset staging
            assert json.loads(out)["warnings"] == []
        assert db_snapshot(par_url) == want_db
        assert staged_snapshot(staging) == want_staged
        assert sorted(p.name for p in (staging / "_manifest").iterdir()) == ["scope=KOSDAQ", "scope=KOSPI"]
    finally:
        if cleanup is not None:
            for _ in cleanup:
                pass
