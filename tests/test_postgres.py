"""The PostgreSQL target: native types that round-trip, transactions that hold, schema versions and
migrations (on both targets), readable errors without passwords, and a run that survives losing its
connection.

The server comes from tests/conftest.py (``OBSERVER_ETL_TEST_PG``); every test gets a fresh database.
The password tests start a throwaway server of their own with scram-sha-256 authentication (they need
PostgreSQL's ``initdb``; without it they skip).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import adbc_driver_manager
import polars as pl
import pyarrow as pa
import pytest

from engine.load import Target, TargetError, parse_target, redact, redact_target
from schemas.tables import (
    ALL_TABLES,
    ETL_REJECTS,
    ETL_WATERMARK,
    MARKET_UNIVERSE,
    SCALP_TICKS,
    SCHEMA_VERSION,
    SWING_SNAPSHOTS,
    Table,
)
from tests.conftest import IN_CI, PG_URL, pg_database_url
from tests.support import REPO, cli, db_snapshot, tick, write_lines

KST = ZoneInfo("Asia/Seoul")
BIG = 2**40 + 7  # well above 2^31
NOW = datetime(2026, 1, 30, 8, 0, 0, 123456, tzinfo=timezone.utc)


def _target(url: str) -> Target:
    t = Target(parse_target(url))
    t.ensure_schema()
    return t


def _frame(table: Table, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows of ``table``; a column left out of a row is null."""
    return pl.DataFrame([{c: r.get(c) for c in table.column_names} for r in rows], schema=table.polars_schema())


def _tick_row(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict(
        symbol="005930", market="kr_stocks", trade_date=date(2026, 1, 30),
        event_time=datetime(2026, 1, 30, 13, 5, 12, tzinfo=KST),
        acc_volume=18_234_567, time_source="exchange", recv_time=datetime(2026, 1, 30, 13, 5, 12, 844213, tzinfo=KST),
        price=158_400, day_open=157_000, day_high=159_800, day_low=156_200, change_rate=1.54,
        acc_trade_value=2_881_234_567_890, tick_volume=12, bid_price=158_400, ask_price=158_500,
        schema_version="1.0", etl_timestamp=NOW, source_file="assets/scalp/20260130_13.jsonl", source_line=1,
        quality_flag="normal", session_id="observer-3f0c2a9e",
    )
    row.update(over)
    return row


def _ticks() -> pl.DataFrame:
    """Time zones (KST, UTC, a day boundary), microseconds at both ends, values above 2^31, nulls."""
    rows = [
        _tick_row(),
        _tick_row(  # 08:59:59.999999 KST is still the previous UTC day
            symbol="000660", event_time=datetime(2026, 1, 30, 8, 59, 59, 999999, tzinfo=KST),
            recv_time=datetime(2026, 1, 29, 23, 59, 59, 999999, tzinfo=timezone.utc), acc_volume=BIG,
            price=2**31 + 1, acc_trade_value=2**62, tick_volume=BIG, change_rate=-0.3, source_line=2**33,
            session_id="세션 \"quoted\" \\ tab\tnewline\n", source_file="assets/scalp/20260130.jsonl",
        ),
        _tick_row(  # every nullable column null
            symbol="373220", event_time=datetime(2026, 1, 30, 9, 0, 0, 1, tzinfo=KST),
            recv_time=datetime(2026, 1, 30, 0, 0, 0, 1, tzinfo=timezone.utc), acc_volume=0,
            day_open=None, day_high=None, day_low=None, change_rate=None, acc_trade_value=None,
            tick_volume=None, bid_price=None, ask_price=None, session_id=None,
        ),
    ]
    return _frame(SCALP_TICKS, rows)


def _as_utc(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(pl.col(pl.Datetime).dt.convert_time_zone("UTC"))


def _same(got: pl.DataFrame, want: pl.DataFrame, table: Table) -> None:
    got = got.select(table.column_names).sort(list(table.key))
    want = _as_utc(want).sort(list(table.key))
    assert got.schema == want.schema
    assert got.to_dicts() == want.to_dicts()


# -- native types round-trip ------------------------------------------------------------------------


def test_native_column_types(pg_url: str) -> None:
    t = _target(pg_url)
    try:
        rows = t._exec(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'scalp_ticks'"
        )
        types = dict(rows)
        assert types["event_time"] == types["recv_time"] == types["etl_timestamp"] == "timestamp with time zone"
        assert types["trade_date"] == "date"
        assert types["acc_volume"] == types["acc_trade_value"] == types["price"] == "bigint"
        assert types["change_rate"] == "double precision"
        found = t.catalog(["scalp_ticks"])["scalp_ticks"]
        assert sorted(found.primary_key) == sorted(SCALP_TICKS.key)
        assert "ix_scalp_ticks_event_time" in found.indexes
    finally:
        t.close()


def test_scalp_ticks_round_trip_unchanged(pg_url: str) -> None:
    t = _target(pg_url)
    try:
        df = _ticks()
        with t.transaction():
            assert t.append(SCALP_TICKS, df) == 3
        got = t.read_table("scalp_ticks")
        _same(got, df, SCALP_TICKS)
        # The instants, not just the wall clock: 08:59:59.999999 KST is 23:59:59.999999 UTC the day before.
        row = got.filter(pl.col("symbol") == "000660").row(0, named=True)
        assert row["event_time"] == datetime(2026, 1, 29, 23, 59, 59, 999999, tzinfo=ZoneInfo("UTC"))
        assert row["acc_volume"] == BIG and row["acc_trade_value"] == 2**62 and row["price"] == 2**31 + 1
        # A session in another time zone reads the same instants.
        t._exec("SET TIME ZONE 'America/Los_Angeles'")
        _same(t.read_table("scalp_ticks"), df, SCALP_TICKS)
        n = t._exec("SELECT count(*) FROM scalp_ticks WHERE event_time = '2026-01-30T13:05:12+09:00'")[0][0]
        assert n == 1
    finally:
        t.close()


def test_upsert_path_round_trips_and_counts(pg_url: str) -> None:
    """The temp-table + ON CONFLICT path keeps every value too, and counts inserted/updated exactly."""
    t = _target(pg_url)
    try:
        df = _ticks()
        with t.transaction():
            assert t.upsert(SCALP_TICKS, df) == (3, 0)
        _same(t.read_table("scalp_ticks"), df, SCALP_TICKS)
        with t.transaction():
            assert t.upsert(SCALP_TICKS, df) == (0, 0)  # a replay changes nothing
        # An earlier-received copy of the first tick wins and replaces it; a later one does not.
        better = df.head(1).with_columns(
            recv_time=pl.col("recv_time") - pl.duration(microseconds=1), session_id=pl.lit("observer-better")
        )
        worse = df.slice(1, 1).with_columns(
            recv_time=pl.col("recv_time") + pl.duration(seconds=1), session_id=pl.lit("observer-worse")
        )
        with t.transaction():
            assert t.upsert(SCALP_TICKS, pl.concat([better, worse])) == (0, 1)
        got = t.read_table("scalp_ticks")
        assert sorted(got["session_id"].drop_nulls().to_list()) == sorted(
            ["observer-better", "세션 \"quoted\" \\ tab\tnewline\n"]
        )
    finally:
        t.close()


def test_other_tables_round_trip(pg_url: str) -> None:
    t = _target(pg_url)
    try:
        swing = _frame(SWING_SNAPSHOTS, [dict(
            symbol="005930", market="kr_stocks", trade_date=date(2026, 1, 21),
            snap_time=datetime(2026, 1, 21, 22, 29, 31, 528819, tzinfo=timezone.utc), day_open=None, day_high=1,
            day_low=None, close=158_400, acc_volume=BIG, bid_price=None, ask_price=None, schema_version="1.0",
            etl_timestamp=NOW, source_file="assets/swing/20260122.jsonl", source_line=7, quality_flag="degraded",
            session_id=None,
        )])
        universe = _frame(MARKET_UNIVERSE, [dict(
            symbol="000660", market="kr_stocks", date=date(2026, 1, 30),
            generated_at=datetime(2026, 1, 30, 17, 5, 41, 118204, tzinfo=KST), schema_version="1.0",
            etl_timestamp=NOW, source_file="universe/20260130_kr_stocks.json", source_line=0, quality_flag="normal",
        ), dict(
            symbol="005930", market="kr_stocks", date=date(2026, 1, 30), generated_at=None, schema_version="1.0",
            etl_timestamp=NOW, source_file="universe/20260130_kr_stocks.json", source_line=0, quality_flag="normal",
        )])
        rejects = _frame(ETL_REJECTS, [dict(
            source_file="assets/scalp/20260130_13.jsonl", line_number=BIG, source_type="scalp",
            reason="invalid_json", raw_line='{"timestamp": "2026-01-30T13:05:12+09:00", 한글', run_id="r1",
            etl_timestamp=NOW,
        )])
        with t.transaction():
            t.append(SWING_SNAPSHOTS, swing)
            assert t.replace_partition(MARKET_UNIVERSE, "kr_stocks", date(2026, 1, 30), universe) == (0, 2)
            t.write_rejects(known_new=False, df=rejects)
        _same(t.read_table("swing_snapshots"), swing, SWING_SNAPSHOTS)
        _same(t.read_table("market_universe"), universe, MARKET_UNIVERSE)
        _same(t.read_table("etl_rejects"), rejects, ETL_REJECTS)
        with t.transaction():  # the date parameter matches the partition (the cast works)
            assert t.replace_partition(MARKET_UNIVERSE, "kr_stocks", date(2026, 1, 30), universe.head(1)) == (2, 1)
        assert t.count("market_universe") == 1
    finally:
        t.close()


def test_nul_in_text_is_stored_not_fatal(pg_url: str) -> None:
    """PostgreSQL text cannot hold 0x00 (a crashed writer leaves NUL runs): the row still loads."""
    t = _target(pg_url)
    try:
        rejects = _frame(ETL_REJECTS, [dict(
            source_file="assets/scalp/20260130_13.jsonl", line_number=n, source_type="scalp",
            reason="invalid_json", raw_line=raw, run_id="r1", etl_timestamp=NOW,
        ) for n, raw in ((3, "\x00\x00{"), (4, "a\x00b"), (5, "clean"))])
        with t.transaction():  # a slice whose neighbour holds a NUL: the clean value stays as it is
            t.write_rejects(known_new=False, df=rejects.slice(2))
        with t.transaction():
            t.write_rejects(known_new=False, df=rejects.head(2))
        got = t.read_table("etl_rejects", order_by="line_number")["raw_line"].to_list()
        assert got == ["\ufffd\ufffd{", "a\ufffdb", "clean"]
    finally:
        t.close()


def _watermark() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "source_type": ["scalp"], "market": ["kr_stocks"],
            "last_processed_ts": [datetime(2026, 1, 30, 13, 5, 12, 844213, tzinfo=KST)],
            "last_processed_file": ["assets/scalp/20260130_13.jsonl"], "run_id": ["r1"], "updated_at": [NOW],
        },
    ).cast(dict(ETL_WATERMARK.polars_schema()))


def test_watermark_and_runs_on_postgres(pg_url: str) -> None:
    t = _target(pg_url)
    try:
        wm = _watermark()
        with t.transaction():
            t.advance_watermark(wm)
        # Never back: an older mark does not move it; byte order decides file names ('.' < '_').
        older = wm.with_columns(
            last_processed_ts=pl.col("last_processed_ts") - pl.duration(hours=1),
            last_processed_file=pl.lit("assets/scalp/20260130.jsonl"), run_id=pl.lit("r2"),
        )
        with t.transaction():
            t.advance_watermark(older)
        row = t.read_table("etl_watermark").row(0, named=True)
        assert row["last_processed_ts"] == datetime(2026, 1, 30, 4, 5, 12, 844213, tzinfo=ZoneInfo("UTC"))
        # ... and names the run that last moved it (420a238), not r2, which only read older lines
        assert row["last_processed_file"] == "assets/scalp/20260130_13.jsonl" and row["run_id"] == "r1"

        t.start_run("run-1", "all", "/archive", NOW)
        with t.transaction():
            t.mark_commit("run-1", 1, dict(lines_read=3, loaded=BIG, duplicates=0, rejected=1))
        assert t.committed_seq("run-1") == 1
        t.finish_run("run-1", "succeeded", dict(lines_read=3, loaded=BIG, duplicates=0, rejected=1, held_back=0), "{}")
        run = t.read_table("etl_runs").row(0, named=True)
        assert run["status"] == "succeeded" and run["loaded"] == BIG
        assert run["finished_at"] is not None and run["finished_at"].tzinfo is not None
        assert abs((datetime.now(timezone.utc) - run["finished_at"]).total_seconds()) < 60
    finally:
        t.close()


def test_winner_order_is_bytewise_under_any_server_locale() -> None:
    """In an ICU en-US database 'x_13.jsonl' < 'x.jsonl'; the ETL (and SQLite, and Polars) say the opposite."""
    gen = pg_database_url()
    base = next(gen)
    name = f"{base.rpartition('/')[2]}_icu"
    admin = Target(parse_target(PG_URL))
    try:
        try:
            admin._exec(
                f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER = icu ICU_LOCALE = 'en-US' LOCALE = 'C.UTF-8'"
            )
        except adbc_driver_manager.Error as exc:
            pytest.skip(f"no ICU database on this server: {exc}")
        url = f"{base.rpartition('/')[0]}/{name}"
        t = _target(url)
        try:
            assert t._exec("SELECT 'a/b_1.jsonl' < 'a/b.jsonl'")[0][0] is True  # the server's own order
            first = _frame(SCALP_TICKS, [_tick_row(source_file="assets/scalp/20260130_13.jsonl", source_line=5)])
            with t.transaction():
                t.append(SCALP_TICKS, first)
            # Same receive time, file name '...0130.jsonl' is smaller byte-wise: that copy wins.
            daily = first.with_columns(source_file=pl.lit("assets/scalp/20260130.jsonl"), source_line=pl.lit(9))
            with t.transaction():
                assert t.upsert(SCALP_TICKS, daily) == (0, 1)
            with t.transaction():
                assert t.upsert(SCALP_TICKS, first) == (0, 0)
            assert t.read_table("scalp_ticks")["source_file"].to_list() == ["assets/scalp/20260130.jsonl"]
        finally:
            t.close()
            admin._exec(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()
        gen.close()


# -- transactions -----------------------------------------------------------------------------------


def test_rollback_undoes_ingest_and_upsert(target_url: str) -> None:
    """adbc_ingest runs inside the explicit transaction on both targets: ROLLBACK takes it back."""
    t = _target(target_url)
    try:
        df = _ticks()
        t.start_run("run-1", "all", "/archive", NOW)
        with pytest.raises(RuntimeError):
            with t.transaction():
                t.append(SCALP_TICKS, df.head(1))
                t.upsert(SCALP_TICKS, df.tail(2))
                t.write_rejects(known_new=False, df=_frame(ETL_REJECTS, [dict(
                    source_file="f", line_number=1, source_type="scalp", reason="invalid_json", run_id="r",
                    etl_timestamp=NOW,
                )]))
                t.advance_watermark(_watermark())
                t.mark_commit("run-1", 1, dict(lines_read=3, loaded=3, duplicates=0, rejected=1))
                assert t.count("scalp_ticks") == 3  # visible inside the transaction
                raise RuntimeError("boom")
        assert t.count("scalp_ticks") == 0 and t.count("etl_rejects") == 0 and t.count("etl_watermark") == 0
        assert t.committed_seq("run-1") == 0
        with t.transaction():  # the connection is usable afterwards
            t.append(SCALP_TICKS, df)
        assert t.count("scalp_ticks") == 3
    finally:
        t.close()


def test_key_conflict_is_recognised(target_url: str) -> None:
    """The pipeline falls back to upserts on a key conflict: the readable error still says what it is."""
    from engine.load import is_key_conflict

    t = _target(target_url)
    try:
        with t.transaction():
            t.append(SCALP_TICKS, _ticks())
        with pytest.raises(adbc_driver_manager.Error) as err:
            with t.transaction():
                t.append(SCALP_TICKS, _ticks().head(1))
        assert is_key_conflict(err.value), str(err.value)
        assert "\n" not in str(err.value)
        assert t.count("scalp_ticks") == 3
    finally:
        t.close()


def test_lost_connection_leaves_nothing_half_loaded(pg_url: str) -> None:
    t = _target(pg_url)
    admin = Target(parse_target(pg_url))
    try:
        pid = t._exec("SELECT pg_backend_pid()")[0][0]
        with pytest.raises(adbc_driver_manager.Error) as err:
            with t.transaction():
                t.append(SCALP_TICKS, _ticks())
                admin._exec(f"SELECT pg_terminate_backend({pid})")
                t.write_rejects(known_new=False, df=_frame(ETL_REJECTS, [dict(
                    source_file="f", line_number=1, source_type="scalp", reason="invalid_json", run_id="r",
                    etl_timestamp=NOW,
                )]))
        msg = str(err.value)
        assert "lost the connection to the PostgreSQL server" in msg and "\n" not in msg, msg
        assert admin.count("scalp_ticks") == 0 and admin.count("etl_rejects") == 0
        with pytest.raises(adbc_driver_manager.Error):
            t.count("scalp_ticks")  # still one readable error, no crash
    finally:
        t.close()
        admin.close()


# -- schema version, migration, incompatible tables (both targets) ----------------------------------


def _versions(t: Target) -> dict[str, str]:
    return {str(a): str(b) for a, b in t._exec("SELECT table_name, schema_version FROM etl_schema")}


def _create(t: Target, ddl: str) -> None:
    with t.transaction():
        t._exec(ddl)


def _without(table: Table, *names: str) -> Table:
    return dataclasses.replace(table, columns=tuple(c for c in table.columns if c.name not in names))


def test_schema_version_recorded(target_url: str) -> None:
    t = _target(target_url)
    try:
        assert _versions(t) == {tb.name: SCHEMA_VERSION for tb in ALL_TABLES}
        before = t.read_table("etl_schema")
        t.ensure_schema()  # idempotent, no rewrite
        assert t.read_table("etl_schema").equals(before)
    finally:
        t.close()


def test_older_table_is_migrated_in_place(target_url: str) -> None:
    old = _without(SCALP_TICKS, "session_id", "bid_price", "ask_price")
    t = Target(parse_target(target_url))
    try:
        _create(t, old.create_ddl(t.dialect))
        row = _ticks().head(1)
        with t.transaction():
            t.append(old, row.select(old.column_names))
        t.ensure_schema()
        found = t.catalog(["scalp_ticks"])["scalp_ticks"]
        assert set(found.columns) == set(SCALP_TICKS.column_names)
        assert "ix_scalp_ticks_event_time" in found.indexes
        assert _versions(t)["scalp_ticks"] == SCHEMA_VERSION
        got = t.read_table("scalp_ticks")
        assert got.height == 1 and got["session_id"].to_list() == [None] and got["price"].to_list() == [158_400]
        with t.transaction():  # and the full schema loads now
            assert t.upsert(SCALP_TICKS, _ticks()) == (2, 1)
    finally:
        t.close()


def _incompatible(dialect: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(table, DDL, words the error must name)."""
    ticks = SCALP_TICKS.create_ddl(dialect)  # type: ignore[arg-type]
    if dialect == "postgresql":
        wrong_type = ticks.replace("acc_volume BIGINT", "acc_volume INTEGER")
        wrong_tz = ticks.replace("recv_time TIMESTAMPTZ", "recv_time TIMESTAMP")
    else:
        wrong_type = ticks.replace("acc_volume INTEGER", "acc_volume TEXT")
        wrong_tz = ticks.replace("\n  price INTEGER", "\n  price REAL")
    assert wrong_type != ticks and wrong_tz != ticks
    wm = ETL_WATERMARK.create_ddl(dialect).replace("PRIMARY KEY (source_type, market)", "PRIMARY KEY (source_type)")  # type: ignore[arg-type]
    return [
        ("scalp_ticks", wrong_type, ("scalp_ticks", "acc_volume")),
        ("scalp_ticks", wrong_tz, ("scalp_ticks", "recv_time" if dialect == "postgresql" else "price")),
        ("etl_watermark", wm, ("etl_watermark", "primary key", "source_type, market")),
        ("swing_snapshots", _without(SWING_SNAPSHOTS, "close").create_ddl(dialect), ("swing_snapshots", "close")),  # type: ignore[arg-type]
    ]


@pytest.mark.parametrize("case", range(len(_incompatible("sqlite"))))
def test_incompatible_table_is_refused_in_one_sentence(target_url: str, case: int) -> None:
    t = Target(parse_target(target_url))
    try:
        name, ddl, words = _incompatible(t.dialect)[case]
        _create(t, ddl)
        with pytest.raises(TargetError) as err:
            t.ensure_schema()
        msg = str(err.value)
        assert all(w in msg for w in words), msg
        assert "\n" not in msg
        # Nothing of the attempt stays: the schema check and its migrations are one transaction.
        assert t.catalog(["etl_schema", "etl_runs"]) == {}
    finally:
        t.close()


def test_newer_schema_version_is_refused(target_url: str) -> None:
    t = _target(target_url)
    try:
        with t.transaction():
            t._exec("UPDATE etl_schema SET schema_version = '99.0' WHERE table_name = 'scalp_ticks'")
        with pytest.raises(TargetError, match=r"scalp_ticks has schema version '99.0'.*upgrade observer-etl"):
            t.ensure_schema()
    finally:
        t.close()


def test_incompatible_table_through_the_cli(target_url: str, tmp_path: Path) -> None:
    t = Target(parse_target(target_url))
    try:
        _create(t, _incompatible(t.dialect)[0][1])
    finally:
        t.close()
    src = tmp_path / "archive"
    write_lines(src / "assets/scalp/20260130_13.jsonl", [tick(acc=1)])
    r = cli("etl", "--source", str(src), "--target", target_url, "--staging", str(tmp_path / "s"), "--json")
    assert r.returncode != 0 and r.stdout == ""
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "scalp_ticks.acc_volume" in r.stderr
    assert not (tmp_path / "s").exists(), "the refused run left its staging folder behind"


def test_concurrent_ensure_schema(pg_url: str) -> None:
    """Two runs starting at once (per-market runs) on a fresh database: the catalog does not race."""
    code = (
        "import sys; from engine.load import Target, parse_target\n"
        "t = Target(parse_target(sys.argv[1])); t.ensure_schema(); t.close()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, pg_url], cwd=REPO, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errs


def test_parallel_commits_that_rewrite_the_same_rejects_take_turns(pg_url: str) -> None:
    """Per-market runs record the same rejects (they carry no market). One commit forgets a grown file's
    rejects from line 2 while another upserts lines 1 and 2 of it, then the first upserts line 1: in
    that order the row locks deadlocked, and PostgreSQL failed one of the runs. The second commit now
    waits for the first before it touches etl_rejects at all."""
    a, b = _target(pg_url), _target(pg_url)
    f = "assets/scalp/20260130_10.jsonl"

    def rejects(lines: list[int], run: str) -> pl.DataFrame:
        return _frame(ETL_REJECTS, [dict(source_file=f, line_number=n, source_type="scalp", reason="truncated_line",
                                         raw_line="{", run_id=run, etl_timestamp=NOW) for n in lines])

    errors: list[BaseException] = []
    b_first_written = threading.Event()

    def other_market() -> None:
        try:
            with b.transaction():
                b.write_rejects(rejects([1], "b"), known_new=False)
                b_first_written.set()
                b.write_rejects(rejects([2], "b"), known_new=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    try:
        a.write_rejects(rejects([1, 2, 3], "before"), known_new=True)
        with a.transaction():
            a.forget_rejects(f, 2)
            thread = threading.Thread(target=other_market)
            thread.start()
            b_first_written.wait(timeout=2)  # set without the lock: b then waits on a's deleted line 2
            a.write_rejects(rejects([1, 2], "a"), known_new=False)
        thread.join(timeout=60)
        assert not thread.is_alive() and errors == []
        got = a.read_table("etl_rejects", order_by="line_number")
        # a's commit came first; b's same rejects then changed nothing (an upsert keeps an equal row as it is)
        assert got.select("line_number", "run_id").rows() == [(1, "before"), (2, "a")]
    finally:
        a.close()
        b.close()


# -- URLs and errors --------------------------------------------------------------------------------


@pytest.fixture
def tiny_archive(tmp_path: Path) -> Path:
    src = tmp_path / "archive"
    write_lines(src / "assets/scalp/20260130_13.jsonl", [tick(acc=1), tick(acc=2), "garbage"])
    return src


@pytest.mark.parametrize(
    "url, words",
    [
        ("postgresql://nobody@127.0.0.1:1/x", ("cannot connect", "127.0.0.1", "port 1", "Connection refused")),
        ("postgresql://nobody:s3cr3t@127.0.0.1:1/x", ("cannot connect", "nobody:***@")),
        ("postgresql://nobody_etl:s3cr3t@127.0.0.1:5432/test", ("cannot connect", 'role "nobody_etl" does not exist')),
        ("postgres://postgres:s3cr3t@127.0.0.1:5432/no_such_db_x", ('database "no_such_db_x" does not exist',)),
        ("postgresql://postgres:s3cr3t@nohost.invalid:5432/x", ("cannot connect", "nohost.invalid")),
        ("postgresql://postgres:s3cr3t@127.0.0.1:99999/x", ("invalid port",)),
        ("postgresql://postgres:s3cr3t%zz@127.0.0.1:1/x", ("cannot connect",)),  # libpq echoes bad %-tokens
        ("postgresql://u:s3cr3t@[::1/x", ("invalid target URL",)),
        ("postgresql://u:s3c/r3t@127.0.0.1:5432/x", ("percent-encode",)),
        ("postgresql://127.0.0.1:1/x?password=s3cr3t&user=u", ("cannot connect", "password=***")),
        ("postgresql://postgres:s3cr3t@127.0.0.1:5432/test?bogus=1", ('invalid URI query parameter: "bogus"',)),
        ("postgresql://", ("invalid PostgreSQL URL",)),
    ],
)
def test_bad_postgres_url_is_one_sentence_without_password(
    tiny_archive: Path, tmp_path: Path, url: str, words: tuple[str, ...]
) -> None:
    r = cli("etl", "--source", str(tiny_archive), "--target", url, "--staging", str(tmp_path / "s"), "--json")
    out = r.stdout + r.stderr
    assert r.returncode != 0 and r.stdout == ""
    assert "Traceback" not in out
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "s3cr3t" not in out and "s3c/r3t" not in out and "r3t" not in out
    for w in words:
        assert w in r.stderr, r.stderr


def test_a_role_that_may_not_create_tables_is_one_sentence(pg_url: str, tiny_archive: Path, tmp_path: Path) -> None:
    """libpq quotes the failed statement, line breaks and all, before the server's reason: the user is
    shown the reason, not a line of our DDL."""
    role = f"etl_no_create_{os.getpid()}"
    admin = Target(parse_target(pg_url))
    try:
        admin._exec(f"CREATE ROLE {role} LOGIN")
        admin._exec("REVOKE CREATE ON SCHEMA public FROM PUBLIC")  # the default since PostgreSQL 15
        u = urlsplit(pg_url)
        url = urlunsplit(u._replace(netloc=f"{role}@{u.hostname}:{u.port or 5432}"))
        r = cli("etl", "--source", str(tiny_archive), "--target", url, "--staging", str(tmp_path / "s"))
        assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr
        assert r.stderr.strip().splitlines() == [f"error: the target database {url} failed: permission denied for schema public"]
    finally:
        admin._exec(f"DROP ROLE IF EXISTS {role}")
        admin.close()


def test_a_url_that_names_no_database_is_refused(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """libpq would connect to the database named after the user: for postgres, the maintenance database,
    where a run created every table and loaded the archive. A database in the query or in PGDATABASE
    (which libpq reads) names one."""
    monkeypatch.delenv("PGDATABASE", raising=False)
    monkeypatch.delenv("PGSERVICE", raising=False)
    for url in ("postgresql://postgres@127.0.0.1:5432/", "postgresql://postgres@127.0.0.1:5432",
                "postgresql://127.0.0.1/?user=postgres", "postgresql://postgres@127.0.0.1:5432/?dbname="):
        with pytest.raises(TargetError, match="it names no database; use postgresql://"):
            parse_target(url)
    assert parse_target("postgresql://127.0.0.1:5432/?dbname=test&user=postgres").dialect == "postgresql"
    assert parse_target("postgresql://127.0.0.1:5432/?service=etl").dialect == "postgresql"  # the service file may
    monkeypatch.setenv("PGDATABASE", "test")
    assert parse_target("postgresql://postgres@127.0.0.1:5432/").dialect == "postgresql"


def test_redact() -> None:
    parse_target("postgresql://u:hunter2x@h/db")
    assert redact("postgresql://u:p@ss@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgresql://:pw@h/db") == "postgresql://:***@h/db"
    assert redact("postgresql://h/db?user=u&password=pw") == "postgresql://h/db?user=u&password=***"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact('invalid token: "hunter2x"') == 'invalid token: "***"'
    assert redact("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert redact("host=h user=u password=pw1 dbname=db") == "host=h user=u password=*** dbname=db"
    # a target without a scheme, echoed in its error; elsewhere such text is no password
    assert redact_target("//u:pw1@h/db") == "//u:***@h/db"
    assert redact_target("u:p@ss@h:5432/db") == "u:***@h:5432/db"
    assert redact_target("postgresql://u:pw1@h/db") == "postgresql://u:***@h/db"
    for text in ("C:\\Users\\kim@corp\\archive", "09:00:01@1000", "2026-01-30T17:05:41@KST", "snap:1@nas", "//u:pw1@h/db"):
        assert redact(text) == text


# -- passwords from the URL, PGPASSWORD and .pgpass (a server that asks for one) ---------------------


PASSWORD = "Pw-s3cr3t/@:%!"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(cands[-1]) if cands else None


@pytest.fixture(scope="module")
def password_server() -> Iterator[tuple[str, int]]:
    """A throwaway PostgreSQL with scram-sha-256 for user postgres: (host, port); CI must be able to start one."""
    unavailable = pytest.fail if IN_CI else pytest.skip
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        unavailable("PostgreSQL's initdb/pg_ctl are not installed")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        runuser = shutil.which("runuser")
        if not runuser:
            unavailable("running as root without runuser")
        as_user = [runuser, "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="etl-pgpw-", dir="/tmp"))
    base.chmod(0o755)
    port = _free_port()
    try:
        pwfile = base / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if as_user:
            shutil.chown(base, "postgres")
            shutil.chown(pwfile, "postgres")
        data = base / "data"
        r = subprocess.run(
            [*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=scram-sha-256", f"--pwfile={pwfile}"],
            capture_output=True, text=True, timeout=120,
        )
        if r.returncode != 0:
            unavailable(f"initdb failed: {r.stderr.strip().splitlines()[-1:]}")
        opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
        r = subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w", "-t", "60", "start"],
            capture_output=True, text=True, timeout=120,
        )
        if r.returncode != 0:
            unavailable(f"could not start a password server: {r.stderr.strip()}")
        try:
            yield "127.0.0.1", port
        finally:
            subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _pw_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """No password from the developer's own environment leaks into these runs."""
    out = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
    out["PGPASSFILE"] = str(tmp_path / "no-pgpass")
    out.update(env)
    return out


def _run_cli(tiny_archive: Path, tmp_path: Path, url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**env}
    return subprocess.run(
        [sys.executable, str(REPO / "cli.py"), "etl", "--source", str(tiny_archive), "--target", url,
         "--staging", str(tmp_path / "stg"), "--json"],
        capture_output=True, text=True, env=full, timeout=300,
    )


def _dump_all_text(url: str, env: dict[str, str]) -> str:
    code = (
        "import sys, json; from engine.load import Target, parse_target\n"
        "t = Target(parse_target(sys.argv[1]))\n"
        "print(json.dumps({n: t.read_table(n).to_dicts() for n in ('etl_runs', 'etl_watermark', 'etl_schema')}, default=str))\n"
    )
    r = subprocess.run([sys.executable, "-c", code, url], cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("how", ["url", "PGPASSWORD", "pgpass"])
def test_password_sources_and_no_leak(password_server, tiny_archive: Path, tmp_path: Path, how: str) -> None:  # type: ignore[no-untyped-def]
    from urllib.parse import quote

    host, port = password_server
    env = _pw_env(tmp_path)
    if how == "url":
        url = f"postgresql://postgres:{quote(PASSWORD, safe='')}@{host}:{port}/postgres"
    else:
        url = f"postgresql://postgres@{host}:{port}/postgres"
        if how == "PGPASSWORD":
            env["PGPASSWORD"] = PASSWORD
        else:
            pgpass = tmp_path / "pgpass"
            escaped = PASSWORD.replace("\\", "\\\\").replace(":", "\\:")
            pgpass.write_text(f"{host}:{port}:*:postgres:{escaped}\n")
            pgpass.chmod(0o600)
            env["PGPASSFILE"] = str(pgpass)
    # Each case in its own database of the password server.
    db = f"pw_{how.lower()}"
    admin = Target(parse_target(f"postgresql://postgres:{quote(PASSWORD, safe='')}@{host}:{port}/postgres"))
    try:
        admin._exec(f"DROP DATABASE IF EXISTS {db}")
        admin._exec(f"CREATE DATABASE {db}")
    finally:
        admin.close()
    url = url.rsplit("/", 1)[0] + f"/{db}"
    r = _run_cli(tiny_archive, tmp_path, url, env)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["loaded"] == 2 and d["rejected"] == 1
    stored = _dump_all_text(url, env)
    for text in (r.stdout, r.stderr, stored):
        assert PASSWORD not in text and quote(PASSWORD, safe="") not in text and "s3cr3t" not in text
    if how == "url":
        assert d["target"] == f"postgresql://postgres:***@{host}:{port}/{db}"


@pytest.mark.parametrize("how", ["missing", "wrong-url", "wrong-env"])
def test_password_failures_are_one_sentence(password_server, tiny_archive: Path, tmp_path: Path, how: str) -> None:  # type: ignore[no-untyped-def]
    host, port = password_server
    env = _pw_env(tmp_path)
    url = f"postgresql://postgres@{host}:{port}/postgres"
    if how == "wrong-url":
        url = f"postgresql://postgres:Wr0ngPassw0rd@{host}:{port}/postgres"
    elif how == "wrong-env":
        env["PGPASSWORD"] = "Wr0ngPassw0rd"
    r = _run_cli(tiny_archive, tmp_path, url, env)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Wr0ngPassw0rd" not in r.stdout + r.stderr
    expected = "no password supplied" if how == "missing" else 'password authentication failed for user "postgres"'
    assert expected in r.stderr, r.stderr


# -- a run that loses its connection mid-load --------------------------------------------------------


def _etl(root: Path, url: str, staging: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(REPO / "cli.py"), "etl", "--source", str(root), "--target", url,
         "--staging", str(staging), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _mid_load(proc: subprocess.Popen[str], watcher: Target, admin: Target, db: str) -> int | None:
    """Wait until the run's backend is inside a load transaction that has written (an xid), after some
    commits; its pid, or None if the run ended first."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        commits = watcher._exec("SELECT coalesce(max(commits), 0) FROM etl_runs")[0][0]
        rows = admin._exec(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'observer-etl' "
            "AND backend_xid IS NOT NULL",
            (db,),
        )
        if commits >= 2 and rows:
            return int(rows[0][0])
        time.sleep(0.002)
    return None


def _assert_whole_commits_then_one_clean_run(big_archive: Path, pg_url: str, tmp_path: Path, watcher: Target) -> None:
    """What a stopped run left is whole commits only, and the next run makes it one clean run's tables."""
    run = watcher._exec("SELECT status, commits, loaded, rejected FROM etl_runs")[0]
    assert run[0] in ("running", "failed") and run[1] >= 2
    loaded_rows = watcher.count("scalp_ticks") + watcher.count("swing_snapshots")
    assert loaded_rows == run[2]  # the rows match the counters the same transactions wrote
    assert watcher.count("etl_rejects") == run[3]
    proc2 = _etl(big_archive, pg_url, tmp_path / "stg")
    _, err2 = proc2.communicate(timeout=300)
    assert proc2.returncode == 0, err2
    statuses = sorted(r[0] for r in watcher._exec("SELECT status FROM etl_runs"))
    assert statuses in (["abandoned", "succeeded"], ["failed", "succeeded"])
    clean = pg_database_url()
    clean_url = next(clean)
    try:
        r = cli("etl", "--source", str(big_archive), "--target", clean_url, "--staging", str(tmp_path / "clean"), "--json")
        assert r.returncode == 0, r.stderr
        assert db_snapshot(pg_url) == db_snapshot(clean_url)
    finally:
        clean.close()


@pytest.mark.parametrize("how", ["connection killed", "ctrl-c", "sigterm"])
def test_a_run_stopped_mid_load_fails_cleanly_and_the_next_run_completes(
    big_archive: Path, pg_url: str, tmp_path: Path, how: str
) -> None:
    """The server ends the connection, the user presses Ctrl-C while a COPY or upsert runs (ADBC
    cancels the statement: PostgreSQL's 'canceling statement due to user request' is an interrupt,
    not a database failure), or a service manager sends SIGTERM: one readable line, whole commits
    only, and the next run completes."""
    db = pg_url.rsplit("/", 1)[1]
    admin = Target(parse_target(PG_URL))
    watcher = Target(parse_target(pg_url))
    try:
        watcher.ensure_schema()
        proc = _etl(big_archive, pg_url, tmp_path / "stg")
        pid = _mid_load(proc, watcher, admin, db)
        assert pid is not None, f"the run ended before it could be interrupted: {proc.communicate()[1]}"
        if how == "ctrl-c":
            proc.send_signal(signal.SIGINT)
        elif how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:
            admin._exec(f"SELECT pg_terminate_backend({pid})")
        out, err = proc.communicate(timeout=300)
        assert out == "" and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err
        if how == "ctrl-c":
            assert proc.returncode == 130 and "interrupted: the last commit is intact" in err, err
        elif how == "sigterm":
            assert proc.returncode == 143 and "terminated: the last commit is intact" in err, err
            assert watcher._exec("SELECT status FROM etl_runs") == [("failed",)]
        else:
            assert proc.returncode == 2 and "lost the connection to the PostgreSQL server" in err, err
        _assert_whole_commits_then_one_clean_run(big_archive, pg_url, tmp_path, watcher)
    finally:
        watcher.close()
        admin.close()


def test_end_to_end_postgres_equals_sqlite(big_archive: Path, pg_url: str, tmp_path: Path) -> None:
    """The same archive into both targets: the same rows; a second run changes nothing."""
    sqlite_url = f"sqlite:///{tmp_path / 't.db'}"
    results = {}
    for name, url in (("pg", pg_url), ("sqlite", sqlite_url)):
        first = cli("etl", "--source", str(big_archive), "--target", url, "--staging", str(tmp_path / name), "--json")
        assert first.returncode == 0, first.stderr
        second = cli("etl", "--source", str(big_archive), "--target", url, "--staging", str(tmp_path / name), "--json")
        assert second.returncode == 0, second.stderr
        d1, d2 = json.loads(first.stdout), json.loads(second.stdout)
        assert d2["loaded"] == 0 and d2["tables"] == {} and d2["commits"] == 0
        results[name] = (d1, db_snapshot(url))
    (pg_sum, pg_db), (sq_sum, sq_db) = results["pg"], results["sqlite"]
    for k in ("lines_read", "loaded", "duplicates", "rejected", "held_back", "tables", "rejects_by_reason"):
        assert pg_sum[k] == sq_sum[k], k
    assert {k: len(v) for k, v in pg_db.items()} == {k: len(v) for k, v in sq_db.items()}
    assert pg_db == sq_db


def test_bulk_ingest_reaches_the_driver_in_bounded_batches_as_one_load(pg_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The driver copies each batch it gets whole into its COPY buffer: a unit's rows go as a stream of
    batches of at most PG_COPY_BATCH_ROWS, and every row arrives, in order, in one transaction."""
    import engine.load

    monkeypatch.setattr(engine.load, "PG_COPY_BATCH_ROWS", 2)
    t = _target(pg_url)
    seen: list[list[int]] = []
    real = t.session.ingest

    def spy(name, data, **kw):  # type: ignore[no-untyped-def]
        batches = list(data) if hasattr(data, "read_next_batch") else data.to_batches()
        seen.append([b.num_rows for b in batches])
        return real(name, pa.RecordBatchReader.from_batches(batches[0].schema, batches), **kw)

    monkeypatch.setattr(t.session, "ingest", spy)
    try:
        df = _frame(SCALP_TICKS, [_tick_row(acc_volume=i, source_line=i) for i in range(5)])
        with t.transaction():
            assert t.append(SCALP_TICKS, df) == 5
        assert seen == [[2, 2, 1]]
        _same(t.read_table("scalp_ticks"), df, SCALP_TICKS)
    finally:
        t.close()


def test_key_text_columns_compare_byte_by_byte(pg_url: str) -> None:
    """Every text column of a primary key is COLLATE "C" (byte order, as Polars and SQLite order strings,
    whatever the server's locale); other text columns keep the database's own collation."""
    from schemas.tables import ALL_TABLES

    t = _target(pg_url)
    try:
        got = {
            (table, col): coll
            for table, col, coll in t._exec(
                "SELECT table_name, column_name, collation_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND data_type = 'text'"
            )
        }
        for table in ALL_TABLES:
            for c in table.columns:
                if c.type == "text":
                    assert (got[(table.name, c.name)] == "C") == (c.name in table.key), (table.name, c.name)
    finally:
        t.close()
