"""The core ETL on handcrafted archives, against every target: rejects, winners, growth, rewrites."""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from engine import scan
from engine.load import Target, parse_target
from schemas.records import REJECT_REASONS
from schemas.tables import SCALP_TICKS, SWING_SNAPSHOTS
from tests.support import db_frames, db_snapshot, rows, run, staged_frame, staged_snapshot, swing, tick, write_lines

SCALP = "assets/scalp/20260130_13.jsonl"
NEXT_HOUR = "assets/scalp/20260130_14.jsonl"
NEXT_HOUR_TICK = tick(acc=3, execution_time="140000", ts="2026-01-30T14:00:00.2+09:00")  # the first trade of the next hour's file


# One line per reject reason, each with exactly one problem. (kind file, line, expected reason)
REJECT_CASES = {
    "invalid_json": [(SCALP, '{"timestamp": "2026-01-30T13:05:12+09:00", "sym{"timestamp": "x"}')],
    "not_an_object": [(SCALP, "[1, 2]"), (SCALP, "null")],
    "bad_field_type": [(SCALP, tick().replace('"volume": {', '"volume": [1], "x": {'))],
    "test_row": [
        (SCALP, tick(source="websocket_test")),
        (SCALP, tick(session="docker_test_session")),
        (SCALP, tick(session="test_session_42")),
        (SCALP, tick(test_marker=True)),
        (SCALP, tick(symbol="TEST01")),
        (SCALP, tick(symbol="TEST01", execution_time="2026-01-30T13:05:12")),
        (SCALP, tick(execution_time="2026-01-30T13:05:12")),  # the collector writes HHMMSS; a harness, ISO
        (SCALP, tick(execution_time="2026-01-30 13:05:13")),
        ("assets/swing/20260130.jsonl", swing(session="quick_test")),
    ],
    "corrupt_parser_window": [
        (SCALP, tick(ts="2026-01-26T13:05:12.1+09:00", symbol="130512", execution_time="158400", price=2, acc=158500)),
        # recognised by content, outside the window's dates too
        (SCALP, tick(symbol="100001", execution_time="070100", price=5, acc=70200)),
    ],
    "missing_field": [
        (SCALP, tick(price=None)),
        (SCALP, json.dumps({"timestamp": "2026-01-30T13:05:12+09:00", "symbol": "005930", "price": {"current": 1000}})),
        ("assets/swing/20260130.jsonl", swing(close=None)),
    ],
    "bad_symbol": [(SCALP, tick(symbol="5930")), (SCALP, tick(symbol="abc123"))],
    "bad_market": [  # a market names a staging directory: never one outside it, nested, or empty
        ("assets/swing/20260130.jsonl", swing(market="../../../../escaped")),
        ("assets/swing/20260130.jsonl", swing(symbol="000660", market="kr/stocks")),
        ("assets/swing/20260130.jsonl", swing(symbol="035420", market="")),
    ],
    "bad_timestamp": [
        (SCALP, tick(ts="2026-01-30 garbage")),
        (SCALP, tick(execution_time="256199")),
        (SCALP, tick(execution_time="13:05:12")),
        ("assets/swing/20260130.jsonl", swing(ts="yesterday")),
        # outside KST 2000-2099: no date to partition by, no text SQLite stores, a watermark stuck in 9999
        (SCALP, tick(ts="9999-12-31T15:00:00+00:00")),
        (SCALP, tick(ts="0001-01-01T00:00:00+09:00")),
        (SCALP, tick(ts="0001-01-01T00:00:01+09:00")),
        (SCALP, tick(ts="2100-01-01T00:00:00+09:00")),  # the range's end is not in it
        ("assets/swing/20260130.jsonl", swing(ts="1999-12-31T23:59:59+09:00")),
        # a second 60: the parsers roll it over, here into the next trade date (a Saturday)
        (SCALP, tick(ts="2026-01-30T23:59:60+09:00")),
        (SCALP, tick(ts="2026-01-30T14:59:60.5Z")),
        ("assets/swing/20260130.jsonl", swing(ts="2026-01-30T23:59:60.000001+09:00")),
    ],
    "bad_price": [(SCALP, tick(price=0)), (SCALP, tick(price=-5)), (SCALP, tick(price=70100.5))],
    "bad_volume": [
        (SCALP, tick(acc=-1)),
        (SCALP, tick(acc=1.5)),
        (SCALP, tick(acc=2**53 + 1)),  # read as a double it would be 2**53: not the number written
        (SCALP, tick(acc=10**20)),
        # 0 is "missing upstream": two such trades must not pass for two copies of one
        (SCALP, tick(acc=0)),
        (SCALP, tick(acc=0, execution_time="130513", price=158500)),
    ],
}


def test_every_reject_reason_has_a_case() -> None:
    """A new reason must get a case here; the two left out have tests of their own below."""
    assert set(REJECT_REASONS) - set(REJECT_CASES) == {"truncated_line", "bad_universe_file"}


@pytest.mark.parametrize("reason", [r for r in REJECT_REASONS if r in REJECT_CASES])
def test_every_reject_reason(reason: str, tmp_path: Path, target_url: str) -> None:
    src = tmp_path / "a"
    good = tick(execution_time="130000", acc=1)
    by_file: dict[str, list[str]] = {}
    for rel, line in REJECT_CASES[reason]:
        by_file.setdefault(rel, [good if "scalp" in rel else swing(ts="2026-01-30T09:00:00+09:00")]).append(line)
    for rel, lines in by_file.items():
        write_lines(src / rel, lines)
    s = run(src, target_url, tmp_path / "stg").to_dict()
    assert s["rejected"] == len(REJECT_CASES[reason])
    assert s["rejects_by_reason"] == {reason: len(REJECT_CASES[reason])}
    assert s["loaded"] == len(by_file)
    got = rows(target_url, "SELECT source_file, line_number, reason, raw_line FROM etl_rejects ORDER BY 1, 2")
    # each with its own line's text (the cases are short and plain: no cap, no NUL)
    want = sorted((rel, i + 2, line) for rel, lines in by_file.items() for i, line in enumerate(lines[1:]))
    assert [(r[0], r[1], r[3]) for r in got] == want
    assert {r[2] for r in got} == {reason}
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(src)
               and not p.is_relative_to(tmp_path / "stg") and not p.name.startswith("trading.db")]
    assert outside == []  # nothing a line says is written anywhere but the staging directory


def test_a_record_inside_whitespace_or_after_a_bom_is_loaded(tmp_path: Path, target_url: str) -> None:
    """Valid JSON all the same: rejected as bad_field_type (a wrong reason too), and a file a Windows
    editor saved lost its first record to its byte order mark. Lines that only look like one stay rejected."""
    src = tmp_path / "a"
    lines = [
        "\ufeff" + tick(acc=1),  # a BOM: the first line of a file, or of what a second writer appended
        tick(acc=2, execution_time="130001") + "   ",
        "\t" + tick(acc=3, execution_time="130002") + " \r",
        "  ", "\ufeff", " [1] ", " {bad} ",
        # not JSON's whitespace, or a BOM not at the start: rejected, as json.loads would
        "\x0c" + tick(acc=4, execution_time="130003"), tick(acc=5, execution_time="130004") + "\x0b",
        " \ufeff" + tick(acc=6, execution_time="130005"),
        "\ufeff" + tick(acc=7, execution_time="130006", price="x"),  # a BOM and a bad field: bad_field_type
    ]
    write_lines(src / SCALP, lines)
    s = run(src, target_url, tmp_path / "stg").to_dict()
    assert (s["loaded"], s["rejects_by_reason"]) == (3, {"invalid_json": 6, "not_an_object": 1, "bad_field_type": 1})
    assert [n for (n,) in rows(target_url, "SELECT source_line FROM scalp_ticks ORDER BY 1")] == [1, 2, 3]


def test_accepted_shapes(tmp_path: Path, target_url: str) -> None:
    """v0 lines, null execution_time, UTC hosts, Z swing times, live_scalp_test: all real data."""
    src = tmp_path / "a"
    v0 = json.dumps(
        {"timestamp": "2026-01-23T10:00:01.5+09:00", "symbol": "000660", "price": {"close": 70100, "open": 70000,
         "high": 70500, "low": 69900, "change_rate": 0.3}, "volume": {"accumulated": 1000}, "source": "websocket",
         "session_id": "observer-a"}
    )
    write_lines(src / "assets/scalp/20260123_10.jsonl", [v0])
    write_lines(
        src / SCALP,
        [
            tick(execution_time=None, acc=10),
            tick(ts="2026-01-30T04:05:13.000001+00:00", execution_time="130513", acc=20),
            tick(ts="2026-01-30T13:05:14+09:00", execution_time="130514", acc=30, session="live_scalp_test"),
            tick(ts="2026-01-30T13:05:15+09:00", execution_time="130515", acc=3_000_000_000, price=70100.0),
        ],
    )
    write_lines(src / "assets/swing/20260121.jsonl", [swing(ts="2026-01-21T22:29:31.528819Z")])
    s = run(src, target_url, tmp_path / "stg").to_dict()
    assert s["rejected"] == 0 and s["loaded"] == 6
    ticks = rows(target_url, "SELECT symbol, trade_date, quality_flag, tick_volume, acc_volume, price FROM scalp_ticks ORDER BY acc_volume")
    # ordered by acc_volume: 10 (no exchange time: degraded), 20, 30, the v0 line (1000, 2026-01-23, no
    # exchange time: degraded), 3,000,000,000
    assert [(str(r[1]), r[2]) for r in ticks] == [
        ("2026-01-30", "degraded"), ("2026-01-30", "normal"), ("2026-01-30", "normal"), ("2026-01-23", "degraded"),
        ("2026-01-30", "normal"),
    ]
    by_acc = {r[4]: r for r in ticks}
    assert by_acc[20][3] == 10 and by_acc[3_000_000_000][3] == 3_000_000_000 - 30 and by_acc[10][3] is None
    assert by_acc[3_000_000_000][5] == 70100
    snap = rows(target_url, "SELECT trade_date, quality_flag FROM swing_snapshots")
    assert [(str(d), q) for d, q in snap] == [("2026-01-22", "out_of_hours")]  # 07:29 KST


def test_a_manual_tick_without_a_price_is_rejected_and_its_shares_go_to_the_next_trade(tmp_path: Path, target_url: str) -> None:
    """The manual collector may write ``price.current: null`` (contract §2): the line is ``missing_field``
    (a tick row is a trade at a price), and the symbol's next loaded trade's tick_volume includes its
    shares, because acc_volume is cumulative (docs/design.md)."""
    src = tmp_path / "a"

    def manual(second: int, tick_shares: int, acc: int, **price: int | None) -> str:  # the manual collector's shape
        return tick(ts=f"2026-01-30T13:05:{second}+09:00", execution_time=f"1305{second}", session="live_scalp_test",
                    volume={"tick": tick_shares, "accumulated": acc, "trade_value": 1}, **price)

    lines = [manual(40, 1000, 1000), manual(41, 300, 1300, price=None), manual(42, 200, 1500)]
    write_lines(src / "assets/scalp/20260130.jsonl", lines)
    s = run(src, target_url, tmp_path / "stg").to_dict()
    assert (s["loaded"], s["rejects_by_reason"]) == (2, {"missing_field": 1})
    assert rows(target_url, "SELECT line_number, reason FROM etl_rejects") == [(2, "missing_field")]
    assert rows(target_url, "SELECT acc_volume, tick_volume FROM scalp_ticks ORDER BY acc_volume") == [(1000, None), (1500, 500)]


def test_a_trade_with_and_without_its_exchange_time_is_one_row(tmp_path: Path, target_url: str) -> None:
    """One trade, once without ``execution_time`` (received in the trade's second) and once with it: one
    record (the cumulative volume names the trade), the copy with the exchange time winning. Keyed on the
    exchange time, they were two records with one primary key: staging held both, the database one, and
    PostgreSQL's upsert failed on every run. In one run or in two, either order, the same database."""
    files = {
        "ws": ("assets/scalp/20260130_13.jsonl", [tick(ts="2026-01-30T13:05:12.3+09:00", execution_time=None, acc=1000)]),
        "manual": ("assets/scalp/20260130.jsonl", [
            tick(ts="2026-01-30T13:05:40+09:00", execution_time="130512", acc=1000, session="live_scalp_test"),
            tick(ts="2026-01-30T13:05:41+09:00", execution_time="130513", acc=1500, session="live_scalp_test"),
        ]),
    }
    cleanup = []
    want = None
    try:
        for n, runs in enumerate(([["ws", "manual"]], [["ws"], ["manual"]], [["manual"], ["ws"]])):
            src, stg, url = tmp_path / f"a{n}", tmp_path / f"stg{n}", target_url
            if n and target_url.startswith("sqlite"):
                url = f"sqlite:///{tmp_path / f't{n}.db'}"
            elif n:
                from tests.conftest import pg_database_url

                cleanup.append(pg_database_url())
                url = next(cleanup[-1])
            summaries = []
            for names in runs:
                for name in names:
                    write_lines(src / files[name][0], files[name][1])
                summaries.append(run(src, url, stg).to_dict())
            assert sum(x["loaded"] + x["duplicates"] for x in summaries) == 3
            assert all(x["warnings"] == [] for x in summaries), [x["warnings"] for x in summaries]
            got = rows(url, "SELECT acc_volume, time_source, tick_volume, source_file FROM scalp_ticks ORDER BY 1")
            assert [tuple(r) for r in got] == [
                (1000, "exchange", None, files["manual"][0]), (1500, "exchange", 500, files["manual"][0]),
            ]
            snap = db_snapshot(url)["scalp_ticks"], staged_snapshot(stg)["scalp_ticks"]
            assert len(snap[1]) == 2
            want = want or snap
            assert snap == want
    finally:
        for gen in cleanup:
            for _ in gen:
                pass


def test_the_watermark_does_not_depend_on_which_copy_was_seen_first(tmp_path: Path) -> None:
    """One trade in the hour file (received 14:59:50.5, the winner) and in the daily file (received
    15:05:00, read first when each file is its own unit, or in a run of its own). The watermark is the
    newest instant of every valid line read, so one run, small units and two runs agree; taken from
    each commit's winners it kept the loser's 15:05 whenever the loser was loaded first."""
    hourly = tick(ts="2026-01-30T14:59:50.5+09:00", execution_time="145950", acc=1000)
    manual = tick(ts="2026-01-30T15:05:00+09:00", execution_time="145950", acc=1000, session="live_scalp_test")
    files = [("assets/scalp/20260130.jsonl", manual), ("assets/scalp/20260130_14.jsonl", hourly)]
    query = "SELECT source_type, market, last_processed_ts, last_processed_file FROM etl_watermark"
    got = []
    for name, unit_bytes, runs in (("one", None, [files]), ("units", 300, [files]), ("runs", None, [files[:1], files[1:]])):
        src, url = tmp_path / name, f"sqlite:///{tmp_path / f'{name}.db'}"
        for batch in runs:
            for rel, line in batch:
                write_lines(src / rel, [line])
            run(src, url, tmp_path / f"{name}-stg", **({"unit_bytes": unit_bytes} if unit_bytes else {}))
        got.append((rows(url, query), rows(url, "SELECT recv_time, source_file FROM scalp_ticks")))
    assert got[0] == got[1] == got[2]
    assert str(got[0][0][0][2]).startswith("2026-01-30T06:05:00")  # 15:05 KST: the newest line read
    assert got[0][1][0][1] == "assets/scalp/20260130_14.jsonl"  # the winner: the earlier-received copy


def test_the_watermark_names_the_run_that_moved_it(tmp_path: Path, target_url: str) -> None:
    """``run_id`` and ``updated_at`` say when a mark last moved: a late file of an earlier hour read by a
    later run leaves them (they named the last run to read any line, which hid how stale a mark was)."""
    src, stg = tmp_path / "a", tmp_path / "stg"
    query = "SELECT run_id, updated_at, last_processed_ts, last_processed_file FROM etl_watermark"
    write_lines(src / "assets/scalp/20260130_14.jsonl", [tick(ts="2026-01-30T14:00:01+09:00", acc=5)])
    first = run(src, target_url, stg).run_id
    (before,) = rows(target_url, query)
    assert before[0] == first
    write_lines(src / "assets/scalp/20260130_09.jsonl", [tick(ts="2026-01-30T09:00:01+09:00", acc=1)])
    late = run(src, target_url, stg)
    assert late.counts["loaded"] == 1
    assert rows(target_url, query) == [before]
    write_lines(src / "assets/scalp/20260130_15.jsonl", [tick(ts="2026-01-30T15:00:01+09:00", acc=9)])
    newer = run(src, target_url, stg).run_id
    ((run_id, updated_at, ts, file),) = rows(target_url, query)
    assert (run_id, file) == (newer, "assets/scalp/20260130_15.jsonl")
    assert str(updated_at) > str(before[1]) and str(ts) > str(before[2])


def test_a_market_run_puts_a_universe_document_on_its_own_date(tmp_path: Path) -> None:
    """A document with none of a market's symbols empties that market's membership on the date the
    document names, not on its file name's date, where another document put the market's symbols."""
    src = tmp_path / "a"
    (src / "universe").mkdir(parents=True)

    def doc(name: str, day: str, symbols: list[str]) -> None:
        (src / "universe" / name).write_text(json.dumps(
            {"metadata": {"date": day, "market": "kr_stocks", "count": len(symbols)}, "symbols": symbols}))

    doc("20260129_kr_stocks.json", "2026-01-30", ["005930", "000660"])
    doc("20260130_kr_stocks.json", "2026-02-02", ["000660"])
    master = tmp_path / "master.csv"
    master.write_text("symbol,market\n005930,KOSPI\n000660,KOSDAQ\n")
    url = f"sqlite:///{tmp_path / 't.db'}"
    run(src, url, tmp_path / "stg", market="KOSPI", security_master=master)
    got = rows(url, "SELECT symbol, market, date FROM market_universe")
    assert [(r[0], r[1], str(r[2])) for r in got] == [("005930", "KOSPI", "2026-01-30")]


def test_a_folder_of_the_archive_that_cannot_be_listed_stops_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.walk skips a folder it cannot list unless told otherwise: a swing folder without read
    permission loaded nothing, and the run succeeded. (Root lists everything, so the refusal is made.)"""
    from engine.pipeline import EtlError

    src = tmp_path / "a"
    write_lines(src / SCALP, [tick(acc=1, execution_time="130512")])
    write_lines(src / "assets/swing/20260130.jsonl", [swing()])
    listed = os.scandir

    def scandir(path):  # type: ignore[no-untyped-def]
        if Path(path).name == "swing":
            raise PermissionError(13, "Permission denied", str(path))
        return listed(path)

    monkeypatch.setattr(os, "scandir", scandir)
    url = f"sqlite:///{tmp_path / 't.db'}"
    with pytest.raises(EtlError, match=r"could not read or write \(Permission denied: .*/assets/swing\)"):
        run(src, url, tmp_path / "stg")


def test_a_market_run_that_finds_none_of_its_market_warns(tmp_path: Path) -> None:
    """--market kospi (the sample's market is kr_stocks, names are case-sensitive) loaded nothing,
    successfully, run after run; a market with rows staged before is quiet when nothing new comes."""
    src, url = tmp_path / "a", f"sqlite:///{tmp_path / 't.db'}"
    write_lines(src / SCALP, [tick(acc=1)])
    s = run(src, url, tmp_path / "st1", market="kospi").to_dict()
    assert s["loaded"] == 0
    assert s["warnings"] == ["no row of market kospi loaded, nor staged before; the valid rows read are of kr_stocks "
                             "(market names are case-sensitive)"]
    assert run(src, url, tmp_path / "st2", market="kr_stocks").to_dict()["warnings"] == []
    write_lines(src / NEXT_HOUR, [NEXT_HOUR_TICK.replace('"symbol": "005930"', '"symbol": "000660"')])
    master = tmp_path / "m.csv"
    master.write_text("symbol,market\n000660,KOSDAQ\n")
    again = run(src, url, tmp_path / "st2", market="kr_stocks", security_master=master).to_dict()
    assert (again["loaded"], again["warnings"]) == (0, [])  # staged before: only nothing new this time


def test_a_snapshot_without_a_market_takes_the_default(tmp_path: Path, target_url: str) -> None:
    """A swing line with no ``market`` (absent or null) is no bad market: it takes the configured default,
    as a tick does (the design's order: security master, the record's own market, the default)."""
    src = tmp_path / "a"
    missing = json.loads(swing(symbol="000660"))
    del missing["market"]
    write_lines(src / "assets/swing/20260130.jsonl",
                [swing(), json.dumps(missing), swing(symbol="035420", market=None)])
    s = run(src, target_url, tmp_path / "stg").to_dict()
    assert s["rejected"] == 0 and s["loaded"] == 3, s["rejects_by_reason"]
    got = rows(target_url, "SELECT symbol, market FROM swing_snapshots ORDER BY symbol")
    assert [tuple(r) for r in got] == [("000660", "kr_stocks"), ("005930", "kr_stocks"), ("035420", "kr_stocks")]


def test_a_listed_holiday_flags_its_rows_non_trading_day(tmp_path: Path) -> None:
    """--holidays: one date a line, comments allowed, as Excel or Notepad save it (BOM, CRLF)."""
    src = tmp_path / "a"
    write_lines(src / SCALP, [tick(acc=1, execution_time="130512")])  # Friday 2026-01-30
    write_lines(src / "assets/scalp/20260129_13.jsonl", [tick(ts="2026-01-29T13:05:12+09:00", acc=1)])
    holidays = tmp_path / "krx_holidays.txt"
    holidays.write_bytes("\ufeff# KRX 2026\r\n2026-01-30  # made up for the test\r\n\r\n2026-02-16\r\n".encode())
    url = f"sqlite:///{tmp_path / 't.db'}"
    run(src, url, tmp_path / "stg", holidays=holidays)
    got = rows(url, "SELECT trade_date, quality_flag FROM scalp_ticks ORDER BY trade_date")
    assert [(str(d), q) for d, q in got] == [("2026-01-29", "normal"), ("2026-01-30", "non_trading_day")]


def _flags_and_stamps(target_url: str, staging: Path) -> dict[str, list[tuple]]:
    """(trade_date, symbol, quality_flag, etl_timestamp) of every tick and snapshot, in the database and
    in the staged Parquet (which must agree)."""
    cols = ["trade_date", "symbol", "time", "quality_flag", "etl_timestamp"]
    out = {}
    for table, time_col in ((SCALP_TICKS, "event_time"), (SWING_SNAPSHOTS, "snap_time")):
        (db,) = db_frames(target_url, [table.name]).values()
        got = db.rename({time_col: "time"}).select(cols).sort(cols).rows()
        staged = staged_frame(staging, table)
        assert staged is not None and staged.rename({time_col: "time"}).select(cols).sort(cols).rows() == got
        out[table.name] = got
    return out


def test_a_changed_holiday_list_flags_the_rows_already_loaded_again(tmp_path: Path, target_url: str) -> None:
    """Flags are computed as rows load; a holiday added to the list later (or taken off it) used to leave
    the loaded rows as they were, with a warning that said to reload, which the archive may no longer
    allow (universe files are deleted upstream). The next run flags them again, in the database and in
    the staging, and stamps exactly those rows with its etl_timestamp; the result is a fresh load's with
    the new list."""
    src, stg = tmp_path / "a", tmp_path / "stg"
    write_lines(src / SCALP, [tick(acc=1, execution_time="130512"), tick(acc=2, execution_time=None)])  # Fri 01-30
    write_lines(src / "assets/scalp/20260129_13.jsonl", [tick(ts="2026-01-29T13:05:12+09:00", acc=1)])
    write_lines(src / "assets/swing/20260130.jsonl", [swing()])
    write_lines(src / "assets/swing/20260129.jsonl", [swing(ts="2026-01-29T13:11:47+09:00")])
    holidays = tmp_path / "h.txt"

    def with_list(*days: str) -> dict:
        holidays.write_text("".join(f"{d}\n" for d in days))
        return run(src, target_url, stg, holidays=holidays).to_dict()

    first = with_list("2026-02-16")
    assert first["holidays"] == ["2026-02-16"] and first["reflagged"] == {}
    loaded = _flags_and_stamps(target_url, stg)
    assert {r[3] for r in loaded["scalp_ticks"]} == {"normal", "degraded"}
    s = with_list("2026-02-16", "2026-02-17")  # no rows on the 17th: no flag changes, the list is recorded
    assert (s["reflagged"], s["commits"], s["warnings"]) == ({}, 1, [])
    assert rows(target_url, "SELECT market, holidays FROM etl_flag_lists") == [("kr_stocks", "2026-02-16,2026-02-17")]
    assert with_list("2026-02-16", "2026-02-17")["commits"] == 0  # and the same list again reads nothing

    s = with_list("2026-01-30")
    assert s["warnings"] == [] and s["reflagged"] == {"2026-01-30": 3} and s["commits"] == 1
    assert s["tables"] == {
        "scalp_ticks": {"inserted": 0, "updated": 2, "deleted": 0},
        "swing_snapshots": {"inserted": 0, "updated": 1, "deleted": 0},
    }
    (runs,) = db_frames(target_url, ["etl_runs"]).values()
    stamp = runs.filter(pl.col("run_id") == s["run_id"])["started_at"].item()
    now = _flags_and_stamps(target_url, stg)
    for name in now:
        for before, after in zip(loaded[name], now[name], strict=True):
            assert before[:3] == after[:3]
            if after[0] == "2026-01-30":
                assert after[3:] == ("non_trading_day", stamp)
            else:
                assert after[3:] == before[3:]  # the other day's rows are not touched
    assert (db_snapshot(target_url), staged_snapshot(stg)) == _as_one_run(src, tmp_path, target_url, holidays=holidays)

    s = with_list("2026-01-30")  # the same list again: nothing to do
    assert (s["reflagged"], s["commits"]) == ({}, 0)
    s = with_list()  # taken off the list: the rows are flagged as before
    assert s["reflagged"] == {"2026-01-30": 3}
    assert [r[:4] for r in _flags_and_stamps(target_url, stg)["scalp_ticks"]] == [r[:4] for r in loaded["scalp_ticks"]]


def test_a_database_from_before_flag_lists_has_every_staged_day_checked_once(tmp_path: Path, target_url: str) -> None:
    """A database written before ``etl_flag_lists`` existed (the table is created empty) does not say which
    list its rows carry; an older run may have recorded one list in etl_runs and left the rows with the
    flags of another, as the old warning said. So every staged day of such a market is checked, once."""
    src, stg = tmp_path / "a", tmp_path / "stg"
    write_lines(src / SCALP, [tick(acc=1, execution_time="130512")])  # Friday 2026-01-30
    write_lines(src / "assets/scalp/20260129_13.jsonl", [tick(ts="2026-01-29T13:05:12+09:00", acc=1)])
    holidays = tmp_path / "h.txt"
    holidays.write_text("2026-01-29\n")
    run(src, target_url, stg, holidays=holidays)
    rows(target_url, "DELETE FROM etl_flag_lists")  # as a database from before the table has it
    holidays.write_text("2026-01-30\n")
    s = run(src, target_url, stg, holidays=holidays).to_dict()
    assert s["reflagged"] == {"2026-01-29": 1, "2026-01-30": 1}
    assert (db_snapshot(target_url), staged_snapshot(stg)) == _as_one_run(src, tmp_path, target_url, holidays=holidays)
    assert run(src, target_url, stg, holidays=holidays).to_dict()["commits"] == 0  # once
    rows(target_url, "DELETE FROM etl_flag_lists")
    s = run(src, target_url, stg, holidays=holidays).to_dict()  # the same list: checked, nothing changes
    assert (s["reflagged"], s["commits"]) == ({}, 1)
    assert rows(target_url, "SELECT market, holidays FROM etl_flag_lists") == [("kr_stocks", "2026-01-30")]


def test_a_holiday_list_that_is_not_utf8_is_one_sentence(tmp_path: Path) -> None:
    from engine.config import ConfigError, load_holidays

    path = tmp_path / "h.txt"
    path.write_bytes("2026-01-30\n".encode("utf-16"))
    with pytest.raises(ConfigError, match=r"holiday list .*h.txt is not UTF-8 text \(byte 0\): save it as UTF-8"):
        load_holidays(path)


def test_a_security_master_that_puts_a_symbol_in_two_markets_is_one_sentence(tmp_path: Path) -> None:
    """Which market won would be the file's order, silently; a line repeated as it is stays harmless."""
    from engine.config import ConfigError, load_security_master

    path = tmp_path / "master.csv"
    path.write_text("symbol,market\n005930,KOSPI\n000660,KOSPI\n005930,KOSPI\n")
    assert load_security_master(path).rows() == [("005930", "KOSPI"), ("000660", "KOSPI")]
    path.write_text("symbol,market\n005930,KOSPI\n000660,KOSPI\n005930,KOSDAQ\n")
    with pytest.raises(ConfigError, match=r"master.csv puts 005930 in more than one market \(KOSDAQ, KOSPI\)"):
        load_security_master(path)


def test_a_security_master_row_without_its_market_is_one_sentence(tmp_path: Path) -> None:
    """Dropped silently, the symbol took the default market; a blank line is still only a blank line."""
    from engine.config import ConfigError, load_security_master

    path = tmp_path / "master.csv"
    path.write_text("symbol,market\n005930,KOSPI\n\n000660,KOSDAQ\n")
    assert load_security_master(path).rows() == [("005930", "KOSPI"), ("000660", "KOSDAQ")]
    for text, message in (("005930,KOSPI\n000660,\n", "000660 has no market"),
                          ("005930,KOSPI\n,KOSDAQ\n", "a row with market 'KOSDAQ' has no symbol")):
        path.write_text("symbol,market\n" + text)
        with pytest.raises(ConfigError, match=f"master.csv: {message}$"):
            load_security_master(path)


@pytest.mark.parametrize("what", ["security_master", "holidays", "staging"])
def test_a_directory_or_a_file_in_the_wrong_place_says_so(tmp_path: Path, what: str) -> None:
    """'does not exist' for a directory given as a file, 'File exists' for a file given as the staging
    directory: both true of something else."""
    from engine.config import RunOptions
    from engine.pipeline import EtlError, run_etl

    src = tmp_path / "a"
    write_lines(src / SCALP, [tick(acc=1)])
    (tmp_path / "afile").write_text("x")
    kw = {"staging": tmp_path / "afile"} if what == "staging" else {what: tmp_path, "staging": tmp_path / "stg"}
    want = {"security_master": f"security master {tmp_path} is a directory, not a file",
            "holidays": f"holiday list {tmp_path} is a directory, not a file",
            "staging": f"staging directory {tmp_path / 'afile'} is not writable: it is a file, not a directory"}[what]
    with pytest.raises(EtlError) as err:
        run_etl(RunOptions(source=src, target=f"sqlite:///{tmp_path / 't.db'}", **kw))
    assert str(err.value) == want


def test_duplicates_keep_the_copy_received_first(tmp_path: Path, target_url: str) -> None:
    src, stg = tmp_path / "a", tmp_path / "stg"
    later = tick(ts="2026-01-30T13:05:14.2+09:00", session="observer-B")
    write_lines(src / SCALP, [later, later, tick(ts="2026-01-30T13:05:14.2+09:00", session="observer-C")])
    s1 = run(src, target_url, stg).to_dict()
    assert (s1["loaded"], s1["duplicates"]) == (1, 2)
    # An earlier-received copy of the same trade arrives in a later run, in another file: it replaces.
    write_lines(src / "assets/scalp/20260130_14.jsonl", [tick(ts="2026-01-30T13:05:12.9+09:00", session="observer-A")])
    s2 = run(src, target_url, stg).to_dict()
    assert (s2["loaded"], s2["duplicates"]) == (1, 0)
    assert s2["tables"]["scalp_ticks"] == {"inserted": 0, "updated": 1, "deleted": 0}
    assert rows(target_url, "SELECT session_id, source_file FROM scalp_ticks") == [
        ("observer-A", "assets/scalp/20260130_14.jsonl")
    ]
    # ... and a later-received copy never does.
    write_lines(src / "assets/scalp/20260130_15.jsonl", [tick(ts="2026-01-30T13:06:00+09:00", session="observer-Z")])
    s3 = run(src, target_url, stg).to_dict()
    assert (s3["loaded"], s3["duplicates"]) == (0, 1)
    assert rows(target_url, "SELECT session_id FROM scalp_ticks") == [("observer-A",)]


def test_late_trade_updates_its_successors_tick_volume(tmp_path: Path, target_url: str) -> None:
    src, stg = tmp_path / "a", tmp_path / "stg"
    write_lines(src / SCALP, [tick(execution_time="130510", acc=100), tick(execution_time="130512", acc=160)])
    run(src, target_url, stg)
    write_lines(src / "assets/scalp/20260130_14.jsonl", [tick(execution_time="130511", acc=130, ts="2026-01-30T13:05:11.5+09:00")])
    s = run(src, target_url, stg).to_dict()
    assert s["tables"]["scalp_ticks"] == {"inserted": 1, "updated": 1, "deleted": 0}
    assert rows(target_url, "SELECT acc_volume, tick_volume FROM scalp_ticks ORDER BY acc_volume") == [
        (100, None), (130, 30), (160, 30)
    ]
    # The successor was rewritten by the second run: its etl_timestamp says so, in the database and in the
    # staged Parquet alike, so that a reader pulling `etl_timestamp > last pull` sees the new value.
    stamps = rows(target_url, "SELECT acc_volume, etl_timestamp FROM scalp_ticks ORDER BY acc_volume")
    assert stamps[0][1] != stamps[1][1] == stamps[2][1], stamps
    staged = staged_frame(stg, SCALP_TICKS).sort("acc_volume")  # (times as ISO text, which sorts as they do)
    assert staged["etl_timestamp"][0] < staged["etl_timestamp"][1] == staged["etl_timestamp"][2]


def test_a_late_trade_rewrites_only_the_staged_part_that_holds_its_successor(tmp_path: Path) -> None:
    """A day staged as three parts (three runs); a late trade in the first hour changes one row of the
    first part: that part is rewritten into the commit's new part, the other two stay as they were, and
    the staging and the database equal one run over every file."""
    src, stg, url = tmp_path / "a", tmp_path / "stg", f"sqlite:///{tmp_path / 'db.sqlite'}"
    for hour, (t0, acc0) in enumerate([("090510", 100), ("100510", 500), ("110510", 900)]):
        write_lines(src / f"assets/scalp/20260130_{9 + hour:02d}.jsonl", [
            tick(ts=f"2026-01-30T{t0[:2]}:05:10.5+09:00", execution_time=t0, acc=acc0),
            tick(ts=f"2026-01-30T{t0[:2]}:05:12.5+09:00", execution_time=t0[:4] + "12", acc=acc0 + 60),
        ])
        run(src, url, stg)
    (part_dir,) = (stg / "scalp_ticks").glob("market=*/trade_date=2026-01-30")
    before = sorted(p.name for p in part_dir.glob("part-*.parquet"))
    assert len(before) == 3
    write_lines(src / "assets/scalp/20260130_12.jsonl", [tick(ts="2026-01-30T09:05:11.5+09:00", execution_time="090511", acc=130)])
    s = run(src, url, stg).to_dict()
    assert s["tables"]["scalp_ticks"] == {"inserted": 1, "updated": 1, "deleted": 0}
    after = sorted(p.name for p in part_dir.glob("part-*.parquet"))
    assert before[1:] == after[:2] and before[0] not in after and len(after) == 3
    assert len(pl.read_parquet(part_dir / after[2])) == 3  # the first hour's two rows and the late trade

    once_src, once_stg, once_url = tmp_path / "b", tmp_path / "stg-b", f"sqlite:///{tmp_path / 'once.sqlite'}"
    for f in src.rglob("*.jsonl"):
        write_lines(once_src / f.relative_to(src), f.read_text(encoding="utf-8").splitlines())
    run(once_src, once_url, once_stg)
    assert staged_snapshot(stg) == staged_snapshot(once_stg)
    assert db_snapshot(url) == db_snapshot(once_url)
    assert rows(url, "SELECT acc_volume, tick_volume FROM scalp_ticks ORDER BY acc_volume")[:4] == [
        (100, None), (130, 30), (160, 30), (500, 340)
    ]


def test_growing_file_holds_back_its_last_line(tmp_path: Path, target_url: str) -> None:
    src, stg = tmp_path / "a", tmp_path / "stg"
    full = [tick(execution_time=f"1305{i:02d}", acc=i + 1) for i in range(5)]
    path = src / SCALP
    path.parent.mkdir(parents=True)
    text = "\n".join(full) + "\n"
    cut = len("\n".join(full[:3])) + 1 + 40  # three lines and a piece of the fourth
    path.write_text(text[:cut])
    s1 = run(src, target_url, stg).to_dict()
    assert (s1["lines_read"], s1["loaded"], s1["held_back"]) == (3, 3, 1)
    with pytest.MonkeyPatch.context() as m:  # unchanged and still its series' newest: not opened again
        m.setattr(scan, "read_new_bytes", _no_reads)
        s_again = run(src, target_url, stg).to_dict()
    assert (s_again["lines_read"], s_again["held_back"], s_again["commits"]) == (0, 1, 0)
    path.write_text(text)
    s2 = run(src, target_url, stg).to_dict()
    assert (s2["lines_read"], s2["loaded"], s2["held_back"]) == (2, 2, 0)
    assert rows(target_url, "SELECT count(*) FROM etl_rejects") == [(0,)]


def test_a_file_cut_short_between_its_chunks_is_read_up_to_the_cut_and_resumed_by_the_next_run(
    tmp_path: Path, target_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big file is planned in chunks; if it shrinks before they are read (its writer rewrote it),
    the run reads what is still there, holds back the partial line at the cut, skips the chunks past it,
    and a later run goes on from there: no line is counted that was not read, none is lost."""
    import engine.pipeline

    src, stg = tmp_path / "a", tmp_path / "stg"
    lines = [tick(execution_time=f"1305{i:02d}", acc=i + 1) for i in range(40)]
    path = write_lines(src / SCALP, lines)
    monkeypatch.setattr(engine.pipeline, "CHUNK_BYTES", len(lines[0]) * 10)
    keep = len("\n".join(lines[:15])) + 1 + 50  # fifteen lines and a piece of the sixteenth
    planned = scan.line_boundaries

    def then_cut(*args: object) -> list[int]:
        cuts = planned(*args)  # type: ignore[arg-type]
        with path.open("r+b") as fh:
            fh.truncate(keep)
        return cuts

    monkeypatch.setattr(scan, "line_boundaries", then_cut)
    s1 = run(src, target_url, stg).to_dict()  # chunk 1, chunk 2 up to the cut (its partial line held back), not 3 and 4
    assert (s1["lines_read"], s1["loaded"], s1["held_back"]) == (15, 15, 1)
    monkeypatch.setattr(scan, "line_boundaries", planned)
    s2 = run(src, target_url, stg).to_dict()
    assert (s2["lines_read"], s2["held_back"]) == (0, 1)
    write_lines(src / SCALP, lines)
    s3 = run(src, target_url, stg).to_dict()
    assert (s3["lines_read"], s3["loaded"], s3["held_back"]) == (25, 25, 0)
    assert rows(target_url, "SELECT count(*), min(acc_volume), max(acc_volume) FROM scalp_ticks") == [(40, 1, 40)]


def test_a_unit_size_below_one_byte_stops_the_run_before_it_starts(tmp_path: Path) -> None:
    """A library caller's ``unit_bytes=0`` cannot cut a file into chunks: the planner would loop forever on
    a file read before, and fail with a seek error on a new one. The CLI's sizes start at one byte."""
    from engine.config import RunOptions
    from engine.pipeline import EtlError, run_etl

    src = tmp_path / "a"
    write_lines(src / SCALP, [tick()])
    for bad in (0, -5):
        with pytest.raises(EtlError, match=f"the unit size must be at least one byte, not {bad}"):
            run_etl(RunOptions(source=src, target=f"sqlite:///{tmp_path / 't.db'}", staging=tmp_path / "stg", unit_bytes=bad))
    assert not (tmp_path / "t.db").exists()


def test_progress_counts_a_file_read_in_chunks_once(tmp_path: Path) -> None:
    """The progress display gets every planned byte and each file once, however many chunks it took."""
    from engine.config import RunOptions
    from engine.pipeline import run_etl

    src = tmp_path / "a"
    lines = [tick(execution_time=f"1305{i:02d}", acc=i + 1) for i in range(40)]
    write_lines(src / SCALP, lines)
    write_lines(src / "assets/scalp/20260130_14.jsonl", [tick(acc=99, execution_time="140000", ts="2026-01-30T14:00:00.2+09:00")])
    seen = {"planned": (0, 0), "files": 0, "bytes": 0, "lines": 0}

    class Record:
        def plan(self, files: int, total_bytes: int) -> None:
            seen["planned"] = (files, total_bytes)

        def advance(self, files: int, nbytes: int, lines: int, rows: int) -> None:
            seen["files"] += files
            seen["bytes"] += nbytes
            seen["lines"] += lines

        def note(self, text: str) -> None: ...

    opts = RunOptions(source=src, target=f"sqlite:///{tmp_path / 't.db'}", staging=tmp_path / "stg", unit_bytes=len(lines[0]) * 7)
    s = run_etl(opts, Record())
    size = sum(f.stat().st_size for f in (src / "assets/scalp").iterdir())
    assert s.commits > 2  # the first file took several chunks (one unit each at this size)
    assert seen == {"planned": (2, size), "files": 2, "bytes": size, "lines": 41}


def _no_reads(*_a: object) -> None:
    raise AssertionError("an unchanged file was opened again")


def test_truncated_line_of_a_finished_file_is_rejected(tmp_path: Path, target_url: str) -> None:
    src, stg = tmp_path / "a", tmp_path / "stg"
    path = src / SCALP
    path.parent.mkdir(parents=True)
    path.write_text(tick(acc=1) + "\n" + tick(acc=2)[:30])
    assert run(src, target_url, stg).to_dict()["held_back"] == 1
    write_lines(src / NEXT_HOUR, [NEXT_HOUR_TICK])
    s = run(src, target_url, stg).to_dict()
    assert s["rejects_by_reason"] == {"truncated_line": 1} and s["held_back"] == 0
    assert rows(target_url, "SELECT source_file, line_number, reason FROM etl_rejects") == [(SCALP, 2, "truncated_line")]




def _as_one_run(src: Path, tmp_path: Path, target_url: str, **kw: Any) -> tuple[dict, dict]:
    """The database and staging one clean run leaves on the archive as it is now (SQLite, a fresh file)."""
    url = f"sqlite:///{tmp_path / 'once.sqlite'}"
    run(src, url, tmp_path / "stg-once", **kw)
    return db_snapshot(url), staged_snapshot(tmp_path / "stg-once")


def test_a_last_line_finished_after_its_file_was_superseded_is_loaded(tmp_path: Path, target_url: str) -> None:
    """The rotation race: the next hour's file already exists when the writer completes the line. The
    half line is rejected as truncated, but once the file grows that line is read again from its start:
    the trade is loaded and the reject withdrawn, as one run over the finished file would have it."""
    src, stg = tmp_path / "a", tmp_path / "stg"
    last = tick(acc=2, execution_time="135959", ts="2026-01-30T13:59:59.9+09:00")
    path = write_lines(src / SCALP, [tick(acc=1), last[:40]], final_newline=False)
    write_lines(src / NEXT_HOUR, [NEXT_HOUR_TICK])
    s1 = run(src, target_url, stg).to_dict()
    assert (s1["loaded"], s1["rejects_by_reason"]) == (2, {"truncated_line": 1})
    with pytest.MonkeyPatch.context() as m:  # its tail is decided: an unchanged file is not opened again
        m.setattr(scan, "read_new_bytes", _no_reads)
        s_again = run(src, target_url, stg).to_dict()
    assert (s_again["lines_read"], s_again["held_back"], s_again["commits"]) == (0, 0, 0)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(last[40:] + "\n")
    s2 = run(src, target_url, stg).to_dict()
    assert (s2["lines_read"], s2["loaded"], s2["rejected"]) == (1, 1, 0)
    assert rows(target_url, "SELECT count(*) FROM etl_rejects") == [(0,)]
    assert (db_snapshot(target_url), staged_snapshot(stg)) == _as_one_run(src, tmp_path, target_url)


def test_a_whole_last_record_without_its_newline_waits_for_it(tmp_path: Path, target_url: str) -> None:
    """A finished file cut exactly before its last newline: the line is rejected as truncated (it may
    yet go on, see below), with its text kept; once the newline comes, the record loads and the reject
    goes, and what follows is numbered as one clean run would."""
    src, stg = tmp_path / "a", tmp_path / "stg"
    whole = tick(acc=2, execution_time="130513")
    path = write_lines(src / SCALP, [tick(acc=1), whole], final_newline=False)
    write_lines(src / NEXT_HOUR, [NEXT_HOUR_TICK])
    s1 = run(src, target_url, stg).to_dict()
    assert (s1["loaded"], s1["rejects_by_reason"], s1["held_back"]) == (2, {"truncated_line": 1}, 0)
    assert rows(target_url, "SELECT line_number, raw_line FROM etl_rejects") == [(2, whole)]
    with path.open("a", encoding="utf-8") as fh:  # the writer's newline, then more lines (a second writer)
        fh.write("\n" + tick(acc=4, execution_time="130514") + "\n" + "garbage\n")
    s2 = run(src, target_url, stg).to_dict()
    assert (s2["lines_read"], s2["loaded"], s2["rejected"]) == (3, 2, 1)
    assert rows(target_url, "SELECT source_file, line_number, reason FROM etl_rejects") == [(SCALP, 4, "invalid_json")]
    assert (db_snapshot(target_url), staged_snapshot(stg)) == _as_one_run(src, tmp_path, target_url)


@pytest.mark.parametrize("cut", [50, None], ids=["half-line", "whole-record"])
def test_a_truncated_line_run_together_with_a_later_record_stays_rejected(
    tmp_path: Path, target_url: str, cut: int | None
) -> None:
    """A crashed writer's last piece, then another writer appends a whole record to the same file: the
    line holds both (contract section 7) and is rejected whole, as one run over the final file would.
    This is why even a whole record without its newline is not loaded at once: a row loaded before
    could not be taken back (which copy wins is decided once; losing copies are counted, not kept)."""
    src, stg = tmp_path / "a", tmp_path / "stg"
    piece = tick(acc=2, execution_time="130513")[:cut]
    path = write_lines(src / SCALP, [tick(acc=1), piece], final_newline=False)
    write_lines(src / NEXT_HOUR, [NEXT_HOUR_TICK])
    run(src, target_url, stg)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(tick(acc=4, execution_time="130514") + "\n")
    s2 = run(src, target_url, stg).to_dict()
    assert (s2["lines_read"], s2["loaded"], s2["rejected"]) == (1, 0, 1)
    assert rows(target_url, "SELECT line_number, reason FROM etl_rejects") == [(2, "invalid_json")]
    assert (db_snapshot(target_url), staged_snapshot(stg)) == _as_one_run(src, tmp_path, target_url)


def test_a_daily_file_whose_day_has_passed_is_finished(tmp_path: Path, target_url: str) -> None:
    """The manual collector's daily file is the newest of its series for good; once a later day's file
    of its kind exists, its writer has moved on and its cut last line is rejected, not held back forever."""
    src, stg = tmp_path / "a", tmp_path / "stg"
    daily = "assets/scalp/20260129.jsonl"
    write_lines(src / daily, [tick(acc=1, ts="2026-01-29T13:05:12.1+09:00"), tick(acc=2)[:30]], final_newline=False)
    write_lines(src / SCALP, [tick(acc=5)])
    s1 = run(src, target_url, stg).to_dict()
    assert (s1["loaded"], s1["held_back"], s1["rejects_by_reason"]) == (2, 0, {"truncated_line": 1})
    assert rows(target_url, "SELECT source_file, line_number FROM etl_rejects") == [(daily, 2)]
    same_day = "assets/scalp/20260130.jsonl"  # a daily file of the newest day may still be written
    write_lines(src / same_day, [tick(acc=7, execution_time="130600"), tick(acc=8)[:30]], final_newline=False)
    s2 = run(src, target_url, stg).to_dict()
    assert (s2["loaded"], s2["held_back"], s2["rejected"]) == (1, 1, 0)


def test_a_manifest_from_before_tail_read_is_read_as_it_was(tmp_path: Path, target_url: str) -> None:
    """A staging written before the manifest had ``tail_read`` and the end fingerprint: the columns read
    as false and absent, a run with nothing new stays one, and a file that grows is read on from where
    that manifest says."""
    src, stg = tmp_path / "a", tmp_path / "stg"
    write_lines(src / SCALP, [tick(acc=1)])
    run(src, target_url, stg)
    path = stg / "_manifest/scope=all/files.parquet"
    pl.read_parquet(path).drop("tail_read", "end_fp_len", "end_fp_hash").write_parquet(path)
    assert run(src, target_url, stg).to_dict()["lines_read"] == 0
    write_lines(src / SCALP, [tick(acc=1), tick(acc=2, execution_time="130513")])
    s = run(src, target_url, stg).to_dict()
    assert (s["lines_read"], s["loaded"]) == (1, 1)
    assert "tail_read" in pl.read_parquet(path).columns


def test_rewritten_file_is_reprocessed(tmp_path: Path, target_url: str) -> None:
    src, stg = tmp_path / "a", tmp_path / "stg"
    write_lines(src / SCALP, [tick(acc=1), "garbage", tick(acc=2, execution_time="130513")])
    run(src, target_url, stg)
    write_lines(src / SCALP, [tick(acc=5, execution_time="130520"), "[1]"])  # shrank and changed its head
    s = run(src, target_url, stg).to_dict()
    assert s["warnings"] == [f"{SCALP} was rewritten (it shrank, or bytes already read changed): reprocessing it"]
    assert (s["lines_read"], s["loaded"], s["rejected"]) == (2, 1, 1)
    assert rows(target_url, "SELECT count(*) FROM scalp_ticks") == [(3,)]
    # the file's rejects are those of what it holds now: line 2 is '[1]', not 'garbage'
    assert rows(target_url, "SELECT line_number, reason, raw_line FROM etl_rejects") == [(2, "not_an_object", "[1]")]


def test_a_file_replaced_by_a_longer_version_with_the_same_head_is_a_rewrite(tmp_path: Path, target_url: str) -> None:
    """A file swapped for a longer one (written aside, renamed over it) whose first 4 KB are the same but
    not what follows: reading on from the old offset would start inside another line and never read the
    changed ones. The bytes before that offset tell it from an append."""
    src, stg = tmp_path / "a", tmp_path / "stg"
    lines = [tick(acc=i + 1, execution_time=f"1305{i:02d}") for i in range(30)]  # ~11 KB
    path = write_lines(src / SCALP, lines)
    run(src, target_url, stg)
    changed = [*lines[:25], tick(acc=126, execution_time="130525", session="x" * 60), *lines[26:]]
    write_lines(src / "replacement.tmp", [*changed, tick(acc=131, execution_time="130531")]).replace(path)
    s = run(src, target_url, stg).to_dict()
    assert s["warnings"] == [f"{SCALP} was rewritten (it shrank, or bytes already read changed): reprocessing it"]
    assert (s["lines_read"], s["loaded"], s["duplicates"], s["rejected"]) == (31, 2, 29, 0)
    assert rows(target_url, "SELECT acc_volume FROM scalp_ticks WHERE acc_volume > 100 ORDER BY 1") == [(126,), (131,)]


def test_a_file_emptied_is_a_rewrite_recorded_once(tmp_path: Path, target_url: str) -> None:
    """A file truncated to nothing: its rejects go, and the next run has nothing to say about it."""
    src, stg = tmp_path / "a", tmp_path / "stg"
    write_lines(src / SCALP, [tick(acc=1), "garbage"])
    write_lines(src / NEXT_HOUR, [NEXT_HOUR_TICK])
    run(src, target_url, stg)
    (src / SCALP).write_bytes(b"")
    s = run(src, target_url, stg).to_dict()
    assert s["warnings"] == [f"{SCALP} was rewritten (it shrank, or bytes already read changed): reprocessing it"]
    assert (s["lines_read"], s["commits"]) == (0, 1)
    assert rows(target_url, "SELECT count(*) FROM etl_rejects") == [(0,)]
    again = run(src, target_url, stg).to_dict()
    assert (again["warnings"], again["lines_read"], again["commits"]) == ([], 0, 0)


def test_universe_rewrite_replaces_the_days_membership(tmp_path: Path, target_url: str) -> None:
    src, stg = tmp_path / "a", tmp_path / "stg"
    path = src / "universe/20260130_kr_stocks.json"
    path.parent.mkdir(parents=True)
    doc = {"metadata": {"date": "2026-01-30", "market": "kr_stocks", "filter_criteria": {"min_price": 4000},
                        "generated_at": "2026-01-30T17:05:41.118204", "count": 3}, "symbols": ["000660", "005930", "373220"]}
    path.write_text(json.dumps(doc, indent=2))
    write_lines(src / "universe/20260131_kr_stocks.json", [json.dumps({"metadata": {"date": "20260131", "count": 1}, "symbols": ["005930"]}, indent=2)])
    s1 = run(src, target_url, stg).to_dict()
    assert s1["universe"] == {"files_read": 2, "symbols_loaded": 4, "files_rejected": 0}
    doc["symbols"] = ["005930", "035720"]
    path.write_text(json.dumps(doc, indent=2))
    s2 = run(src, target_url, stg).to_dict()
    assert s2["universe"]["files_read"] == 1
    got = rows(target_url, "SELECT date, symbol FROM market_universe ORDER BY 1, 2")
    assert [(str(d), s) for d, s in got] == [("2026-01-30", "005930"), ("2026-01-30", "035720"), ("2026-01-31", "005930")]
    assert run(src, target_url, stg).to_dict()["universe"]["files_read"] == 0


def test_a_units_many_rejects_are_spilled_and_loaded_as_if_held(
    generated, tmp_path: Path, target_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Past a sixteenth of its unit, a unit's reject rows go to a spill file and into the database from
    there: the same database and rejects as rows held in memory, and no spill file left behind."""
    from engine import pipeline

    root, _ = generated
    held = run(root, f"sqlite:///{tmp_path / 'held.db'}", tmp_path / "held").to_dict()
    spilled: list[int] = []
    close = pipeline._RejectSink.close

    def counted(self):  # type: ignore[no-untyped-def]
        out = close(self)
        if out.spill is not None:
            assert out.spill.is_file() and out.frame.height == 0
            spilled.append(out.height)
        return out

    monkeypatch.setattr(pipeline._RejectSink, "close", counted)
    s = run(root, target_url, tmp_path / "stg", unit_bytes=64 * 1024).to_dict()
    assert len(spilled) >= 2 and sum(spilled) < s["rejected"]  # some units spilled, not every one
    assert (s["rejected"], s["rejects_by_reason"]) == (held["rejected"], held["rejects_by_reason"])
    assert db_snapshot(target_url) == db_snapshot(f"sqlite:///{tmp_path / 'held.db'}")
    assert [p for p in (tmp_path / "stg" / "_spill").rglob("*") if p.is_file()] == []


def test_universe_documents_share_a_commit_and_the_later_of_a_day_wins(tmp_path: Path, target_url: str) -> None:
    """A run's changed documents load in one commit, and leave what loading them one run at a time leaves:
    a document written later and dated like an earlier one replaces that day's membership (a simplified
    file without generated_at counts as written at its file name's date). ``symbols_loaded`` counts the
    memberships loaded, not those of documents another replaced in the same run."""
    docs = {
        "20260129": {"metadata": {"date": "2026-01-29", "market": "kr_stocks"}, "symbols": ["005930", "000660"]},
        "20260130": {"metadata": {"date": "2026-01-30", "generated_at": "2026-01-30T17:05:41.118204"},
                     "symbols": ["005930", "035720"]},
        "20260131": {"metadata": {"date": "20260130", "count": 1}, "symbols": ["373220"]},  # the 30th again
        "20260201": {"metadata": {"date": "2026-02-01"}, "symbols": ["59"]},  # rejected
    }
    together = tmp_path / "together"
    for day, doc in docs.items():
        write_lines(together / f"universe/{day}_kr_stocks.json", [json.dumps(doc)])
    s = run(together, target_url, tmp_path / "stg").to_dict()
    assert s["commits"] == 1
    assert s["universe"] == {"files_read": 4, "symbols_loaded": 3, "files_rejected": 1}
    got = rows(target_url, "SELECT date, symbol FROM market_universe ORDER BY 1, 2")
    assert [(str(d), sym) for d, sym in got] == [("2026-01-29", "000660"), ("2026-01-29", "005930"), ("2026-01-30", "373220")]
    assert rows(target_url, "SELECT source_file FROM etl_rejects") == [("universe/20260201_kr_stocks.json",)]
    want = db_snapshot(target_url), staged_snapshot(tmp_path / "stg")

    one_by_one, url = tmp_path / "one", f"sqlite:///{tmp_path / 'one.db'}"
    for day, doc in docs.items():
        write_lines(one_by_one / f"universe/{day}_kr_stocks.json", [json.dumps(doc)])
        assert run(one_by_one, url, tmp_path / "stg1").to_dict()["commits"] == 1
    assert (db_snapshot(url), staged_snapshot(tmp_path / "stg1")) == want

    url = f"sqlite:///{tmp_path / 'capped.db'}"  # documents are small: one commit, whatever the unit size
    assert run(together, url, tmp_path / "stg2", unit_bytes=1).to_dict()["commits"] == 1
    assert (db_snapshot(url), staged_snapshot(tmp_path / "stg2")) == want


def _universe_doc(day: str, symbols: list[str], generated_at: str | None = None) -> str:
    meta: dict = {"date": day, "market": "kr_stocks", **({"generated_at": generated_at} if generated_at else {})}
    return json.dumps({"metadata": meta, "symbols": symbols})


def _membership(url: str) -> list[tuple[str, str, str]]:
    return [(str(d), sym, f) for d, sym, f in rows(url, "SELECT date, symbol, source_file FROM market_universe ORDER BY 1, 2")]


def test_the_newest_universe_document_of_a_day_wins_however_runs_met_them(tmp_path: Path, target_url: str) -> None:
    """Two files name one date: the one written last wins, not the one a run happened to read last (a
    rewrite of the older file, read by a later run, took the day back). One run and two agree."""
    src, stg = tmp_path / "a", tmp_path / "stg"
    older, newer = src / "universe/20260130_kr_stocks.json", src / "universe/20260131_kr_stocks.json"
    write_lines(older, [_universe_doc("2026-01-30", ["000660", "005930", "373220"], "2026-01-30T17:05:41.1")])
    write_lines(newer, [_universe_doc("2026-01-30", ["000660", "005930"], "2026-01-31T08:00:00.0")])
    run(src, target_url, stg)
    want = [("2026-01-30", "000660", "universe/20260131_kr_stocks.json"), ("2026-01-30", "005930", "universe/20260131_kr_stocks.json")]
    assert _membership(target_url) == want
    write_lines(older, [_universe_doc("2026-01-30", ["000660", "005930", "035720", "373220"], "2026-01-30T18:00:00.0")])
    assert run(src, target_url, stg).to_dict()["universe"] == {"files_read": 1, "symbols_loaded": 0, "files_rejected": 0}
    assert _membership(target_url) == want
    one = f"sqlite:///{tmp_path / 'one.db'}"
    run(src, one, tmp_path / "one-stg")
    assert _membership(one) == want


def test_a_universe_document_dated_anew_leaves_its_old_date_to_the_next_newest(tmp_path: Path, target_url: str) -> None:
    """The newest document of a day is rewritten with another date: the day goes to the next newest
    document naming it (read again from the archive), or is emptied; as one run over the final archive."""
    src, stg = tmp_path / "a", tmp_path / "stg"
    write_lines(src / "universe/20260130_kr_stocks.json", [_universe_doc("2026-01-30", ["000660"], "2026-01-30T17:00:00")])
    moving = src / "universe/20260131_kr_stocks.json"
    write_lines(moving, [_universe_doc("2026-01-30", ["005930"], "2026-01-31T08:00:00")])
    write_lines(src / "universe/20260202_kr_stocks.json", [_universe_doc("2026-02-02", ["035720"], "2026-02-02T08:00:00")])
    alone = src / "universe/20260203_kr_stocks.json"
    write_lines(alone, [_universe_doc("2026-02-03", ["373220"], "2026-02-03T08:00:00")])
    run(src, target_url, stg)
    assert [d for d, *_ in _membership(target_url)] == ["2026-01-30", "2026-02-02", "2026-02-03"]
    write_lines(moving, [_universe_doc("2026-01-31", ["005930"], "2026-01-31T09:00:00")])
    write_lines(alone, [_universe_doc("2026-02-04", ["373220"], "2026-02-04T08:00:00")])
    run(src, target_url, stg)
    want = [
        ("2026-01-30", "000660", "universe/20260130_kr_stocks.json"),
        ("2026-01-31", "005930", "universe/20260131_kr_stocks.json"),
        ("2026-02-02", "035720", "universe/20260202_kr_stocks.json"),
        ("2026-02-04", "373220", "universe/20260203_kr_stocks.json"),
    ]
    assert _membership(target_url) == want
    one = f"sqlite:///{tmp_path / 'one.db'}"
    run(src, one, tmp_path / "one-stg")
    assert _membership(one) == want


def test_a_staging_whose_manifest_predates_document_dates_reads_each_document_once_more(
    tmp_path: Path, target_url: str
) -> None:
    """A manifest written before documents' dates were kept knows none of them: the first run after reads
    them all again, so a date a document leaves goes to the one an older run loaded, as in one run."""
    import polars as pl

    src, stg = tmp_path / "a", tmp_path / "stg"
    write_lines(src / "universe/20260130_kr_stocks.json", [_universe_doc("2026-01-30", ["000660", "005930"], "2026-01-30T17:05:00")])
    moving = src / "universe/20260131_kr_stocks.json"
    write_lines(moving, [_universe_doc("2026-01-30", ["373220"], "2026-01-31T08:00:00")])
    run(src, target_url, stg)
    files = stg / "_manifest/scope=all/files.parquet"
    pl.read_parquet(files).drop("doc_date", "doc_written_at").write_parquet(files)  # as the older code wrote it
    write_lines(moving, [_universe_doc("2026-01-31", ["373220"], "2026-01-31T12:00:00")])
    s = run(src, target_url, stg).to_dict()
    assert s["universe"]["files_read"] == 2  # the unchanged one too, once
    one = f"sqlite:///{tmp_path / 'one.db'}"
    run(src, one, tmp_path / "one-stg")
    assert _membership(target_url) == _membership(one)
    assert [d for d, *_ in _membership(one)] == ["2026-01-30", "2026-01-30", "2026-01-31"]
    assert run(src, target_url, stg).to_dict()["universe"]["files_read"] == 0  # and only once


def test_an_empty_universe_document_empties_the_date_it_names(tmp_path: Path, target_url: str) -> None:
    """It was put on its file name's date, leaving the date it names as it was."""
    src, stg = tmp_path / "a", tmp_path / "stg"
    write_lines(src / "universe/20260130_kr_stocks.json", [_universe_doc("2026-01-30", ["000660", "005930"], "2026-01-30T17:00:00")])
    run(src, target_url, stg)
    write_lines(src / "universe/20260131_kr_stocks.json", [_universe_doc("2026-01-30", [], "2026-01-31T08:00:00")])
    s = run(src, target_url, stg).to_dict()
    assert _membership(target_url) == []
    assert s["tables"]["market_universe"]["deleted"] == 2


def test_bad_universe_file_is_rejected_not_fatal(tmp_path: Path, target_url: str) -> None:
    src = tmp_path / "a"
    write_lines(src / "universe/20260130_kr_stocks.json", ['{"metadata": {"date": "2026-01-30"}, "symbols": ["0059'], final_newline=False)
    s = run(src, target_url, tmp_path / "stg").to_dict()
    assert s["universe"]["files_rejected"] == 1
    assert rows(target_url, "SELECT reason FROM etl_rejects") == [("bad_universe_file",)]


@pytest.mark.parametrize(
    "symbols, metadata, cause",
    [
        ([f"{i:06d}" for i in range(2500)][:2000] + ["BAD"] + ["005930"], {}, 'symbols[2000] is "BAD", not a 6-character code'),
        (["005930", 5930], {}, "symbols[1] is 5930, not a string"),
        (["005930"], {"market": "a/b"}, 'its market "a/b" is not a market name'),
        (None, {}, "it is not UTF-8 JSON (Expecting value: line 6"),
        # The date and the time it was written decide which document a date takes: no guessing either.
        (["005930"], {"date": "2026-02-29"}, 'its metadata.date "2026-02-29" is not a date from 2000 to 2099 (YYYY-MM-DD or YYYYMMDD)'),
        (["005930"], {"date": "2026-0-130"}, 'its metadata.date "2026-0-130" is not a date'),
        (["005930"], {"date": "２０２６０１３０"}, 'its metadata.date "２０２６０１３０" is not a date'),
        (["005930"], {"date": 20260130}, "its metadata.date 20260130 is not a date"),
        (["005930"], {"date": "9999-12-31"}, 'its metadata.date "9999-12-31" is not a date from 2000 to 2099'),
        (["005930"], {"generated_at": "9999-01-01T00:00:00"}, 'its metadata.generated_at "9999-01-01T00:00:00" is not a time'),
    ],
)
def test_a_rejected_universe_document_says_why(
    tmp_path: Path, target_url: str, symbols: list[object] | None, metadata: dict[str, str], cause: str
) -> None:
    """A document is rejected whole (one bad entry leaves no membership to load), and its raw text is
    cut at 2,000 characters: the run's warnings name the entry and why, and the document stays out of
    rejects_by_reason, which counts lines and adds up to `rejected` (it counted the file as well)."""
    src, rel = tmp_path / "a", "universe/20260130_kr_stocks.json"
    doc = {"metadata": {"date": "2026-01-30", **metadata}, "symbols": symbols}
    write_lines(src / rel, [json.dumps(doc, indent=2)[:60] if symbols is None else json.dumps(doc, indent=2)])
    s = run(src, target_url, tmp_path / "stg").to_dict()
    assert (s["universe"]["files_rejected"], s["rejected"], s["rejects_by_reason"]) == (1, 0, {})
    (warning,) = [w for w in s["warnings"] if rel in w]
    assert warning.startswith(f"universe document {rel} rejected whole: {cause}"), warning
    assert rows(target_url, "SELECT source_file, line_number, reason FROM etl_rejects") == [(rel, 0, "bad_universe_file")]


@pytest.mark.parametrize("written", ["2026-01-30 17:05:41.118204", "2026-01-30T17:05", "2026-01-30T23:59:60", 1769760000, ""])
def test_a_universe_document_whose_written_time_is_no_time_loads_and_says_so(
    tmp_path: Path, target_url: str, written: object
) -> None:
    """Membership is kept for good only in the database (upstream deletes the files after 14 days), so a
    generated_at that is not an ISO time (``str(datetime)`` writes a space) does not cost the day: the
    document loads, ranked as a simplified file is, by its file name's date, and the run says so."""
    src, rel = tmp_path / "a", "universe/20260130_kr_stocks.json"
    doc = {"metadata": {"date": "2026-01-30", "generated_at": written}, "symbols": ["005930"]}
    write_lines(src / rel, [json.dumps(doc, indent=2)])
    s = run(src, target_url, tmp_path / "stg").to_dict()
    assert s["universe"] == {"files_read": 1, "symbols_loaded": 1, "files_rejected": 0}
    assert rows(target_url, "SELECT symbol, generated_at FROM market_universe") == [("005930", None)]
    (warning,) = [w for w in s["warnings"] if rel in w]
    assert warning.startswith(f"universe document {rel}: its metadata.generated_at {json.dumps(written)} is not an ISO 8601 time")


def test_a_universe_file_read_while_being_written_loads_later_and_its_reject_goes(tmp_path: Path, target_url: str) -> None:
    src, stg = tmp_path / "a", tmp_path / "stg"
    rel = "universe/20260130_kr_stocks.json"
    whole = json.dumps({"metadata": {"date": "2026-01-30", "market": "kr_stocks"}, "symbols": ["005930", "000660"]})
    write_lines(src / rel, [whole[:60]], final_newline=False)
    assert run(src, target_url, stg).to_dict()["universe"]["files_rejected"] == 1
    assert rows(target_url, "SELECT source_file, line_number, reason FROM etl_rejects") == [(rel, 0, "bad_universe_file")]
    (src / rel).write_text(whole)
    s = run(src, target_url, stg).to_dict()
    assert s["universe"] == {"files_read": 1, "symbols_loaded": 2, "files_rejected": 0}
    assert rows(target_url, "SELECT count(*) FROM etl_rejects") == [(0,)]
    assert rows(target_url, "SELECT count(*) FROM market_universe") == [(2,)]


def test_a_universe_file_rejected_twice_keeps_one_reject_of_its_latest_version(tmp_path: Path, target_url: str) -> None:
    src, stg = tmp_path / "a", tmp_path / "stg"
    rel = "universe/20260130_kr_stocks.json"
    for text in ('{"metadata": {"date": "2026-01-30"', '{"metadata": {"date": "2026-01-30", "market"'):
        write_lines(src / rel, [text], final_newline=False)
        s = run(src, target_url, stg).to_dict()
        assert s["universe"]["files_rejected"] == 1  # and no 'staging reset?' upsert:
        assert [w for w in s["warnings"] if "rejected whole" not in w] == []
    assert rows(target_url, "SELECT line_number, raw_line FROM etl_rejects") == [(0, text)]


def test_a_rejected_universe_file_keeps_as_many_characters_as_a_rejected_line(tmp_path: Path, target_url: str) -> None:
    """Its raw text is capped like a line's, at RAW_LINE_CAP characters: the document's first 2,000
    bytes were kept, so Korean names left a third of the text, the last character cut in half."""
    from engine.scan import RAW_LINE_CAP

    src = tmp_path / "a"
    rel = "universe/20260130_kr_stocks.json"
    text = '{"metadata": {"date": "2026-01-30"}, "names": "' + "삼성전자" * 1000  # not JSON: cut short
    write_lines(src / rel, [text], final_newline=False)
    assert run(src, target_url, tmp_path / "stg").to_dict()["universe"]["files_rejected"] == 1
    assert rows(target_url, "SELECT raw_line FROM etl_rejects") == [(text[:RAW_LINE_CAP],)]


def test_a_universe_file_whose_market_is_not_a_name_is_rejected(tmp_path: Path, target_url: str) -> None:
    src = tmp_path / "a"
    doc = {"metadata": {"date": "2026-01-30", "market": "../kr_stocks"}, "symbols": ["005930"]}
    write_lines(src / "universe/20260130_kr_stocks.json", [json.dumps(doc)])
    s = run(src, target_url, tmp_path / "stg").to_dict()
    assert s["universe"] == {"files_read": 1, "symbols_loaded": 0, "files_rejected": 1}
    assert rows(target_url, "SELECT reason FROM etl_rejects") == [("bad_universe_file",)]
    assert not (tmp_path / "stg" / "kr_stocks").exists()


def test_a_source_without_archive_files_says_so(tmp_path: Path) -> None:
    """A new archive is empty, but so is a --source that names one of its folders: the run says which."""
    src = tmp_path / "archive"
    write_lines(src / "assets/scalp/20260130_13.jsonl", [tick()])
    url, stg = f"sqlite:///{tmp_path / 't.db'}", tmp_path / "stg"
    s = run(src / "assets/scalp", url, stg).to_dict()
    assert s["status"] == "succeeded" and s["lines_read"] == 0
    assert s["warnings"] == [
        f"no archive file under {src / 'assets/scalp'} (1 other file): --source names the archive root, "
        "the directory that holds assets/scalp, assets/swing and universe"
    ]
    assert run(src, url, stg).to_dict()["warnings"] == []


def test_symlinked_folders_are_read_once(tmp_path: Path) -> None:
    """``assets/scalp`` linked to another disk is read like any folder; a link back up (a loop) or a
    second link to the same folder does not read anything twice."""
    src, elsewhere = tmp_path / "archive", tmp_path / "disk2/scalp"
    write_lines(elsewhere / "20260130_13.jsonl", [tick(acc=1), tick(acc=2, execution_time="130513")])
    write_lines(src / "assets/swing/20260130.jsonl", [swing()])
    (src / "assets/scalp").symlink_to(elsewhere, target_is_directory=True)
    (src / "assets/loop").symlink_to(src, target_is_directory=True)
    (src / "assets/zz_again").symlink_to(elsewhere, target_is_directory=True)
    url, stg = f"sqlite:///{tmp_path / 't.db'}", tmp_path / "stg"
    s = run(src, url, stg).to_dict()
    assert (s["lines_read"], s["loaded"], s["duplicates"], s["warnings"]) == (3, 3, 0, [])
    assert rows(url, "SELECT DISTINCT source_file FROM scalp_ticks") == [("assets/scalp/20260130_13.jsonl",)]


def test_a_misnamed_file_in_a_kind_folder_is_named_in_a_warning(tmp_path: Path) -> None:
    """A file in scalp/ or swing/ whose name is not a real date is not read: the run says which."""
    src = tmp_path / "archive"
    write_lines(src / "assets/scalp/20260130_13.jsonl", [tick()])
    write_lines(src / "assets/scalp/20260231_10.jsonl", [tick()])
    write_lines(src / "assets/swing/20260130.jsonl.gz", ["x"])
    write_lines(src / "notes/readme.json", ["{}"])  # elsewhere: not ours, and not a warning
    s = run(src, f"sqlite:///{tmp_path / 't.db'}", tmp_path / "stg").to_dict()
    assert s["files"]["unrecognised"] == 3 and s["loaded"] == 1
    assert s["warnings"] == [
        "2 files in scalp/ or swing/ not read, not named YYYYMMDD_HH.jsonl or YYYYMMDD.jsonl with a real date: "
        "assets/scalp/20260231_10.jsonl, assets/swing/20260130.jsonl.gz"
    ]
    # An hour rotated after it loaded whole (gzipped, the original gone) holds nothing new: no warning,
    # run after run. One rotated after more lines were written to it holds lines never read: named.
    def rotate(extra: list[str]) -> list[str]:
        hour = src / "assets/scalp/20260130_13.jsonl"
        with hour.open("a") as fh:
            fh.writelines(f"{line}\n" for line in extra)
        hour.with_name(hour.name + ".gz").write_bytes(gzip.compress(hour.read_bytes()))
        hour.unlink()
        s = run(src, f"sqlite:///{tmp_path / 't.db'}", tmp_path / "stg").to_dict()
        assert s["lines_read"] == 0
        warned = [w for w in s["warnings"] if "not read" in w]
        (src / "assets/scalp/20260130_13.jsonl.gz").unlink()  # (the next case writes the hour again)
        return warned

    assert rotate([]) == [
        "2 files in scalp/ or swing/ not read, not named YYYYMMDD_HH.jsonl or YYYYMMDD.jsonl with a real date: "
        "assets/scalp/20260231_10.jsonl, assets/swing/20260130.jsonl.gz"
    ]
    write_lines(src / "assets/scalp/20260130_13.jsonl", [tick()])
    assert "assets/scalp/20260130_13.jsonl.gz" in rotate([tick(acc=2)])[0]


def test_a_run_that_waits_for_another_says_so(tmp_path: Path) -> None:
    """Two runs of one scope never overlap; the second says it waits (live, and in its warnings)."""
    import fcntl
    import threading

    from engine.config import RunOptions
    from engine.pipeline import run_etl

    src, stg = tmp_path / "a", tmp_path / "stg"
    write_lines(src / SCALP, [tick(acc=1)])
    (stg / "_locks").mkdir(parents=True)
    other = (stg / "_locks" / "global.lock").open("a")  # another run, holding the all-markets lock
    fcntl.flock(other, fcntl.LOCK_EX)
    threading.Timer(0.5, other.close).start()
    notes: list[str] = []

    class Notes:
        def plan(self, files: int, total_bytes: int) -> None: ...
        def advance(self, files: int, nbytes: int, lines: int, rows: int) -> None: ...
        def note(self, text: str) -> None:
            notes.append(text)

    s = run_etl(RunOptions(source=src, target=f"sqlite:///{tmp_path / 't.db'}", staging=stg), Notes()).to_dict()
    assert notes == [f"waiting for another observer etl run on {stg} to finish (the scope all lock)"]
    assert len(s["warnings"]) == 1
    assert re.fullmatch(r"waited \d+\.\d s for another run on this staging directory to finish", s["warnings"][0])
    assert s["loaded"] == 1


def test_readers_of_the_staged_tables_never_meet_a_temporary_file(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Parts are written in the run's spill directory and renamed into their partition: Polars' hive scan
    of a table's directory fails on a file of another extension, such as one being written, or one a
    killed run left (which the next run of the scope deletes)."""
    src, stg, url = tmp_path / "a", tmp_path / "stg", f"sqlite:///{tmp_path / 't.db'}"
    write_lines(src / SCALP, [tick(acc=i, execution_time=f"1305{i:02d}") for i in range(1, 4)])
    write_lines(src / "assets/swing/20260130.jsonl", [swing()])
    written: list[Path] = []
    real = pl.DataFrame.write_parquet

    def spy(self: pl.DataFrame, file: Any, *args: Any, **kw: Any) -> Any:
        written.append(Path(file))
        return real(self, file, *args, **kw)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", spy)
    run(src, url, stg)
    tables = [stg / t for t in ("scalp_ticks", "swing_snapshots")]
    assert written and not [p for p in written if any(p.is_relative_to(t) for t in tables)]
    monkeypatch.undo()
    stray = stg / "scalp_ticks/market=kr_stocks/trade_date=2026-01-30/.part-20261128T000000000000Z-abcdef-000001.parquet.tmp"
    stray.write_bytes(b"PAR1 half a file")  # what a run killed by an older version left
    with pytest.raises(Exception):
        pl.scan_parquet(stg / "scalp_ticks", hive_partitioning=True).collect()
    write_lines(src / SCALP, [tick(acc=i, execution_time=f"1305{i:02d}") for i in range(1, 5)])
    run(src, url, stg)
    assert not stray.exists()
    staged = pl.scan_parquet(stg / "scalp_ticks", hive_partitioning=True).collect()
    assert staged.height == 4 == rows(url, "SELECT count(*) FROM scalp_ticks")[0][0]


def test_second_run_changes_nothing(tmp_path: Path, target_url: str) -> None:
    src, stg = tmp_path / "a", tmp_path / "stg"
    write_lines(src / SCALP, [tick(acc=i, execution_time=f"1305{i:02d}") for i in range(1, 30)] + ["garbage"])
    write_lines(src / "assets/swing/20260130.jsonl", [swing(), swing(symbol="000660")])
    run(src, target_url, stg)
    before = db_snapshot(target_url)
    s = run(src, target_url, stg).to_dict()
    assert (s["lines_read"], s["commits"]) == (0, 0)
    assert db_snapshot(target_url) == before


def test_database_ahead_of_a_reset_staging(tmp_path: Path, target_url: str) -> None:
    """Staging wiped (or pointed elsewhere) while the database kept its rows: upsert, never fail or duplicate."""
    src = tmp_path / "a"
    write_lines(src / SCALP, [tick(acc=i, execution_time=f"1305{i:02d}") for i in range(1, 6)])
    run(src, target_url, tmp_path / "stg1")
    before = db_snapshot(target_url)
    s = run(src, target_url, tmp_path / "stg2").to_dict()
    assert any("upserting" in w for w in s["warnings"])
    assert s["tables"]["scalp_ticks"]["inserted"] == 0
    assert db_snapshot(target_url) == before


def test_tick_without_exchange_time_moves_to_its_first_receipt(tmp_path: Path, target_url: str) -> None:
    """No execution_time: the trade is (symbol, date, acc_volume); its event_time is the first receipt."""
    src, stg = tmp_path / "a", tmp_path / "stg"
    write_lines(src / SCALP, [tick(ts="2026-01-30T13:05:17.4+09:00", execution_time=None, acc=500, session="observer-B")])
    write_lines(src / "assets/scalp/20260130_14.jsonl", [tick(ts="2026-01-30T14:00:09+09:00", execution_time=None, acc=500, session="observer-C")])
    s1 = run(src, target_url, stg).to_dict()
    assert (s1["loaded"], s1["duplicates"]) == (1, 1)
    write_lines(src / "assets/scalp/20260130_15.jsonl", [tick(ts="2026-01-30T13:05:12.1+09:00", execution_time=None, acc=500, session="observer-A")])
    s2 = run(src, target_url, stg).to_dict()
    assert (s2["loaded"], s2["duplicates"]) == (1, 0)
    got = rows(target_url, "SELECT event_time, time_source, session_id FROM scalp_ticks")
    assert len(got) == 1 and got[0][1:] == ("receive", "observer-A")
    assert str(got[0][0]).replace(" ", "T").startswith("2026-01-30T04:05:12")


def test_first_load_builds_the_reader_indexes(tmp_path: Path, target_url: str) -> None:
    """Secondary indexes are dropped for a first load into empty tables and built once at its end."""
    from schemas.tables import DATA_TABLES

    def indexes(t: Target) -> dict[str, set[str]]:
        found = t.catalog([table.name for table in DATA_TABLES])
        return {table.name: {table.index_name(i) for i in table.indexes} & found[table.name].indexes for table in DATA_TABLES}

    every = {table.name: {table.index_name(i) for i in table.indexes} for table in DATA_TABLES}
    assert any(every.values())
    src = tmp_path / "a"
    write_lines(src / SCALP, [tick(acc=i, execution_time=f"1305{i:02d}") for i in range(1, 6)])
    t = Target(parse_target(target_url))
    try:
        t.ensure_schema()
        assert indexes(t) == every
        deferred = t.begin_bulk_load(DATA_TABLES)  # empty tables: their indexes go until the end
        assert {d.name for d in deferred} == {name for name, idx in every.items() if idx}
        assert indexes(t) == {name: set() for name in every}
        t.end_bulk_load(deferred)
        assert indexes(t) == every
        run(src, target_url, tmp_path / "stg")
        assert indexes(t) == every
        again = t.begin_bulk_load(DATA_TABLES)  # scalp_ticks is no longer empty: its indexes stay
        assert {d.name for d in again} == {name for name, idx in every.items() if idx and name != "scalp_ticks"}
        assert indexes(t)["scalp_ticks"] == every["scalp_ticks"]
        t.end_bulk_load(again)
        assert indexes(t) == every
    finally:
        t.close()


def test_first_sqlite_load_writes_through_a_rollback_journal_and_leaves_wal(tmp_path: Path) -> None:
    """Empty tables: the run writes each page once (rollback journal, synchronous=FULL); the file ends in
    WAL mode, as every later run and every reader finds it. Not empty, or another connection open: WAL."""
    import adbc_driver_sqlite.dbapi as driver

    from schemas.tables import DATA_TABLES

    url = f"sqlite:///{tmp_path / 't.db'}"
    t = Target(parse_target(url))
    try:
        t.ensure_schema()
        other = driver.connect(str(tmp_path / "t.db"), autocommit=True)  # e.g. a run beside this one
        other_cur = other.cursor()
        other_cur.execute("SELECT count(*) FROM scalp_ticks")  # SQLite opens the file on first use
        other_cur.fetchall()
        deferred = t.begin_bulk_load(DATA_TABLES)
        assert not t.rollback_journal and t._exec("PRAGMA journal_mode") == [("wal",)]
        assert t._exec("PRAGMA busy_timeout") == [(120_000,)]
        t.end_bulk_load(deferred)
        other_cur.close()
        other.close()

        deferred = t.begin_bulk_load(DATA_TABLES)
        assert t.rollback_journal
        assert t._exec("PRAGMA journal_mode") == [("delete",)] and t._exec("PRAGMA synchronous") == [(2,)]
        t.end_bulk_load(deferred)
        assert t._exec("PRAGMA journal_mode") == [("wal",)] and t._exec("PRAGMA synchronous") == [(1,)]

        t.begin_bulk_load(DATA_TABLES)  # a run that fails after this: closing returns the file to WAL
    finally:
        t.close()
    src = tmp_path / "a"
    write_lines(src / SCALP, [tick(acc=i, execution_time=f"1305{i:02d}") for i in range(1, 6)])
    run(src, url, tmp_path / "stg")
    t = Target(parse_target(url))
    try:
        assert t._exec("PRAGMA journal_mode") == [("wal",)]
        t.begin_bulk_load(DATA_TABLES)
        assert not t.rollback_journal  # rows loaded: no longer a first load
    finally:
        t.close()
    assert not (tmp_path / "t.db-journal").exists()


def test_closing_after_a_failed_first_load_returns_to_wal_without_a_checkpointer(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A run that fails in its first load leaves the file in WAL, and starts no thread to do it."""
    import adbc_driver_sqlite.dbapi as driver

    from engine import load
    from schemas.tables import DATA_TABLES

    t = Target(parse_target(f"sqlite:///{tmp_path / 't.db'}"))
    try:
        t.ensure_schema()
        t.begin_bulk_load(DATA_TABLES)
        assert t.rollback_journal
        started: list[object] = []
        monkeypatch.setattr(load._Checkpointer, "start", classmethod(lambda cls, *args: started.append(args)))
    finally:
        t.close()
    assert started == []
    with driver.connect(str(tmp_path / "t.db")) as conn, conn.cursor() as cur:
        cur.execute("PRAGMA journal_mode")
        assert cur.fetchall() == [("wal",)]


def test_a_run_starting_beside_a_first_load_connects_and_neither_waits_for_a_journal_switch(tmp_path: Path) -> None:
    """Run A loads into an empty file through a rollback journal; run B connects in the middle of A's
    transaction: B neither fails nor waits to switch the file back to WAL, and A's end switches it."""
    from schemas.tables import DATA_TABLES

    url = parse_target(f"sqlite:///{tmp_path / 't.db'}")
    a = Target(url)
    b = None
    try:
        a.ensure_schema()
        deferred = a.begin_bulk_load(DATA_TABLES)
        assert a.rollback_journal
        with a.transaction():
            a._exec("INSERT INTO etl_schema (table_name, schema_version, updated_at) VALUES ('x', '0', 'now')")
            b = Target(url, busy_timeout_ms=60_000)  # A holds the write lock: B's switch to WAL is refused
            assert b._exec("PRAGMA journal_mode") == [("delete",)]
        assert b.count("etl_schema") == a.count("etl_schema")
        b.close()
        b = None
        a.end_bulk_load(deferred)
        assert a._exec("PRAGMA journal_mode") == [("wal",)]
    finally:
        if b is not None:
            b.close()
        a.close()


def test_a_run_with_nothing_new_reads_no_unchanged_file_and_a_same_size_rewrite_is_still_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Size and mtime as recorded: the file is not opened again (its head is not re-hashed). A rewrite
    to the same size changes the mtime, so its head is compared and the file reprocessed."""
    import os

    src, stg, url = tmp_path / "a", tmp_path / "stg", f"sqlite:///{tmp_path / 't.db'}"
    path = write_lines(src / SCALP, [tick(acc=1), tick(acc=2, execution_time="130513")])
    run(src, url, stg)

    with monkeypatch.context() as m:
        m.setattr(scan, "fingerprint_at", _no_reads)
        m.setattr(scan, "read_new_bytes", _no_reads)
        assert run(src, url, stg).to_dict()["lines_read"] == 0

    before = path.stat()
    write_lines(path, [tick(acc=3), tick(acc=4, execution_time="130514")])  # same length, other content
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))  # a coarse clock may not have moved
    s = run(src, url, stg).to_dict()
    assert any("rewritten" in w for w in s["warnings"]) and s["loaded"] == 2


def test_a_full_disk_while_staging_stops_the_run_in_one_sentence_and_the_next_run_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parts are written on the stage thread while the database loads: a write that fails there
    rolls the commit back, the run ends with one readable sentence, and the next run loads it all."""
    import polars as pl

    import engine.pipeline
    from engine.pipeline import EtlError

    src = tmp_path / "a"
    write_lines(src / SCALP, [tick(acc=i, execution_time=f"1305{i:02d}") for i in range(1, 6)])
    url = f"sqlite:///{tmp_path / 't.db'}"

    def disk_full(*_a: object, **_k: object) -> None:
        pl.DataFrame({"a": list(range(100_000))}).write_parquet("/dev/full")  # ENOSPC, as Polars reports it

    with monkeypatch.context() as m:
        m.setattr(engine.pipeline, "write_part", disk_full)
        with pytest.raises(EtlError, match="could not read or write .*No space left on device"):
            run(src, url, tmp_path / "stg")
    assert rows(url, "SELECT count(*) FROM scalp_ticks") == [(0,)]
    ((status, summary),) = rows(url, "SELECT status, summary_json FROM etl_runs")
    assert status == "failed"
    assert json.loads(summary)["error"].startswith("the run stopped at a file it could not read or write (")
    assert "No space left on device" in json.loads(summary)["error"]
    run(src, url, tmp_path / "stg")
    run(src, f"sqlite:///{tmp_path / 'clean.db'}", tmp_path / "clean-stg")
    assert db_snapshot(url) == db_snapshot(f"sqlite:///{tmp_path / 'clean.db'}")


def test_ctrl_c_during_a_driver_call_is_never_lost(target_url: str) -> None:
    """SIGINT while a statement runs is an interrupt when the call returns: not a database error, and
    not lost (ADBC's DB-API wrapper consumed it when the statement ended first)."""
    import signal
    import threading

    t = Target(parse_target(target_url))
    statement = (  # a second or so inside one driver call
        # (about 2 s on this host, which runs to its end before the interrupt is raised: still going at
        # 0.2 s on a host ten times faster; 10M rows took 0.79 s here)
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 25000000) SELECT count(*) FROM c"
        if target_url.startswith("sqlite") else "DO $$ BEGIN PERFORM pg_sleep(1); END $$"
    )
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, as the CLI runs (cli.py)
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            t._exec(statement)
        timer.join(timeout=10)  # (the timer thread may still be on its way out after its kill)
        assert timer.finished.is_set()  # the interrupt was the timer's, sent while the statement ran
        for _ in range(200):  # and many short calls in a row each see one, however short
            with pytest.raises(KeyboardInterrupt):
                threading.Timer(0.0, os.kill, (os.getpid(), signal.SIGINT)).start()
                while True:
                    t._exec("SELECT 1")
        assert t._exec("SELECT 1") == [(1,)]  # the connection is still usable
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
        t.close()


def test_an_interrupt_stays_an_interrupt_when_cleanup_fails_on_top_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C inside shutil.rmtree made it close a directory twice: the EBADF that followed was
    reported as 'a file it could not read or write' (exit 2) instead of the interrupt (exit 130)."""
    import engine.pipeline

    def interrupted_promote(*_a: object, **_k: object) -> None:
        try:
            raise KeyboardInterrupt
        finally:
            raise OSError(9, "Bad file descriptor")

    src = tmp_path / "a"
    write_lines(src / SCALP, [tick(acc=1)])
    url = f"sqlite:///{tmp_path / 't.db'}"
    monkeypatch.setattr(engine.pipeline.manifest, "promote", interrupted_promote)
    with pytest.raises(KeyboardInterrupt):
        run(src, url, tmp_path / "stg")
    ((status, summary),) = rows(url, "SELECT status, summary_json FROM etl_runs")
    assert (status, json.loads(summary)["error"]) == ("failed", "interrupted (Ctrl-C or SIGTERM)")


@pytest.mark.parametrize("at", ["finish_run", "close"])
def test_a_stop_as_a_run_finishes_agrees_with_etl_runs(
    at: str, tmp_path: Path, target_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C or SIGTERM in the last moments of a run: before its 'succeeded' row commits, the run is
    marked failed (it was left 'running'); while the connection closes after it, the run returns as
    succeeded (the CLI exited 143 for a run that etl_runs called succeeded). The next run has nothing to do."""
    import engine.pipeline

    real_finish, real_close = Target.finish_run, Target.close

    def finish_run(self: Target, run_id: str, status: str, *a: Any) -> None:
        if status == "succeeded":
            raise KeyboardInterrupt  # before the row is written
        real_finish(self, run_id, status, *a)

    def close(self: Target) -> None:
        real_close(self)
        raise KeyboardInterrupt

    src = tmp_path / "a"
    write_lines(src / SCALP, [tick(acc=1)])
    with monkeypatch.context() as m:
        m.setattr(engine.pipeline.Target, at, finish_run if at == "finish_run" else close)
        if at == "finish_run":
            with pytest.raises(KeyboardInterrupt):
                run(src, target_url, tmp_path / "stg")
        else:
            assert run(src, target_url, tmp_path / "stg").to_dict()["status"] == "succeeded"
    assert rows(target_url, "SELECT status, loaded FROM etl_runs") == [("failed" if at == "finish_run" else "succeeded", 1)]
    assert run(src, target_url, tmp_path / "stg").to_dict()["lines_read"] == 0


def test_a_failed_run_says_why_in_etl_runs(tmp_path: Path, target_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed run's row keeps its cause, also for a bug (the user's scheduler log may be gone when
    someone reads etl_runs); a run that succeeds has none."""
    import engine.pipeline

    src = tmp_path / "a"
    write_lines(src / SCALP, [tick(acc=1)])

    def bug(*_a: object, **_k: object) -> None:
        raise ValueError("boom\nsecond line")

    with monkeypatch.context() as m:
        m.setattr(engine.pipeline.dedup, "resolve_partition", bug)
        with pytest.raises(ValueError, match="boom"):
            run(src, target_url, tmp_path / "stg")
    assert run(src, target_url, tmp_path / "stg").to_dict()["error"] is None
    got = rows(target_url, "SELECT status, summary_json FROM etl_runs ORDER BY started_at")
    assert [(status, json.loads(summary)["error"]) for status, summary in got] == [
        ("failed", "internal error, please report it: ValueError: boom"),
        ("succeeded", None),
    ]


@pytest.mark.parametrize("point, seq", [("db_committed", 2), ("manifest_promoted", 2), ("promoted", 2), ("db_committed", 3)])
def test_an_interrupt_after_the_database_took_a_commit_keeps_its_counts(
    point: str, seq: int, tmp_path: Path, target_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C landing once a commit's transaction has committed (as COMMIT returns, or in the promote):
    the run's etl_runs row counted it in ``commits`` but took its lines back out of ``loaded`` and
    ``rejected``, so the failed run's row said less than its tables held, for good. Commit 3 is the
    universe documents'."""
    import engine.pipeline

    def interrupt_at(p: str, n: int) -> None:
        if (p, n) == (point, seq):
            raise KeyboardInterrupt

    src = tmp_path / "a"
    write_lines(src / "assets/scalp/20260129_13.jsonl", [tick(ts="2026-01-29T13:05:12+09:00", acc=1), "{bad"])
    write_lines(src / SCALP, [tick(acc=i, execution_time=f"1305{i:02d}") for i in range(1, 4)] + ["[1]"])
    write_lines(src / "universe/20260130_kr_stocks.json", ['{"metadata": {"date": "20260130", "count": 1}, "symbols": ["005930"]}'])
    monkeypatch.setattr(engine.pipeline, "_crash_point", interrupt_at)
    with pytest.raises(KeyboardInterrupt):
        run(src, target_url, tmp_path / "stg")
    ((status, commits, loaded, rejected, summary),) = rows(
        target_url, "SELECT status, commits, loaded, rejected, summary_json FROM etl_runs"
    )
    in_tables = rows(target_url, "SELECT (SELECT count(*) FROM scalp_ticks) + (SELECT count(*) FROM swing_snapshots)")
    assert (status, commits) == ("failed", seq)
    assert (loaded, rejected) == (in_tables[0][0], rows(target_url, "SELECT count(*) FROM etl_rejects")[0][0])
    assert json.loads(summary)["commits"] == seq
    if seq == 3:
        assert json.loads(summary)["universe"]["symbols_loaded"] == 1
    monkeypatch.undo()
    run(src, target_url, tmp_path / "stg")
    assert sum(r[0] for r in rows(target_url, "SELECT loaded FROM etl_runs")) == 4


def test_a_unit_whose_every_line_is_rejected_commits_its_rejects(tmp_path: Path) -> None:
    """Nothing decodes on one day, nothing validates on another: both units commit their rejects only."""
    src = tmp_path / "a"
    write_lines(src / "assets/scalp/20260129_13.jsonl", ["{not json", "", "[1]"])
    write_lines(src / SCALP, [tick(acc=i, source="mock") for i in range(1, 4)] + ["{truncated"])
    url = f"sqlite:///{tmp_path / 't.db'}"
    s = run(src, url, tmp_path / "stg").to_dict()
    assert (s["lines_read"], s["loaded"], s["rejected"]) == (7, 0, 7)
    assert s["rejects_by_reason"] == {"invalid_json": 3, "not_an_object": 1, "test_row": 3}
    before = db_snapshot(url)
    assert run(src, url, tmp_path / "stg").to_dict()["lines_read"] == 0
    assert db_snapshot(url) == before


# -- exact times, dates and flags; moved keys; rewritten parts (a mutation audit found these unpinned) ----


def _instant(v: object) -> str:
    """An instant as UTC text with microseconds, whichever form the target returns it in."""
    from datetime import datetime, timezone

    if isinstance(v, datetime):
        return v.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return str(v).replace(" ", "T")[:26]


def test_trade_date_event_time_and_flag_of_each_tick_exactly(tmp_path: Path, target_url: str) -> None:
    """The exchange time's seconds, a receive time cut to its second, the KST date before 09:00 KST (the
    UTC date is the day before), and the flags at the session's edges and on a weekend."""
    cases = [  # (receive time, execution_time, trade_date, event_time UTC, flag)
        ("2026-01-30T09:30:17.5+09:00", "093017", "2026-01-30", "2026-01-30T00:30:17.000000", "normal"),
        ("2026-01-30T08:30:00.5+09:00", "083000", "2026-01-30", "2026-01-29T23:30:00.000000", "out_of_hours"),
        ("2026-01-30T13:05:12.4+09:00", None, "2026-01-30", "2026-01-30T04:05:12.000000", "degraded"),
        ("2026-01-30T09:00:00.2+09:00", "090000", "2026-01-30", "2026-01-30T00:00:00.000000", "normal"),
        ("2026-01-30T08:59:59.9+09:00", "085959", "2026-01-30", "2026-01-29T23:59:59.000000", "out_of_hours"),
        ("2026-01-30T15:30:00.2+09:00", "153000", "2026-01-30", "2026-01-30T06:30:00.000000", "normal"),
        ("2026-01-30T15:30:01.2+09:00", "153001", "2026-01-30", "2026-01-30T06:30:01.000000", "out_of_hours"),
        ("2026-01-31T10:00:00.2+09:00", "100000", "2026-01-31", "2026-01-31T01:00:00.000000", "non_trading_day"),
        ("2026-02-01T10:00:00.2+09:00", "100000", "2026-02-01", "2026-02-01T01:00:00.000000", "non_trading_day"),
    ]
    src = tmp_path / "a"
    for i, (ts, et, *_) in enumerate(cases):
        path = src / f"assets/scalp/{ts[:4]}{ts[5:7]}{ts[8:10]}_{ts[11:13]}.jsonl"
        old = path.read_text().splitlines() if path.exists() else []
        write_lines(path, [*old, tick(ts=ts, execution_time=et, acc=1000 + i, symbol=f"00{i:04d}")])
    s = run(src, target_url, tmp_path / "stg").to_dict()
    assert s["loaded"] == len(cases), s
    got = rows(target_url, "SELECT trade_date, event_time, quality_flag FROM scalp_ticks ORDER BY acc_volume")
    assert [(str(d), _instant(e), q) for d, e, q in got] == [tuple(c[2:]) for c in cases]


def test_a_moved_key_deletes_its_own_row_only(tmp_path: Path, target_url: str) -> None:
    """Two trades of one second, both first seen without the exchange time (event_time: the receive
    second); a later copy of one with the exchange time moves its key. Deleting the old key by fewer
    columns than all of it took the other trade with it."""
    src, stg = tmp_path / "a", tmp_path / "stg"
    write_lines(src / SCALP, [tick(ts="2026-01-30T13:05:12.1+09:00", execution_time=None, acc=100),
                              tick(ts="2026-01-30T13:05:12.6+09:00", execution_time=None, acc=200)])
    run(src, target_url, stg)
    write_lines(src / NEXT_HOUR, [tick(ts="2026-01-30T13:05:12.1+09:00", execution_time="130511", acc=100)])
    run(src, target_url, stg)
    got = rows(target_url, "SELECT acc_volume, event_time, time_source FROM scalp_ticks ORDER BY acc_volume")
    assert [(a, _instant(e), t) for a, e, t in got] == [
        (100, "2026-01-30T04:05:11.000000", "exchange"), (200, "2026-01-30T04:05:12.000000", "receive")]


def test_better_copies_in_two_staged_parts_rewrite_both(tmp_path: Path, target_url: str) -> None:
    """One commit replaces a row in each of two staged parts: both parts are rewritten, so the staging
    holds each trade once (rewriting only one left the other's stale copy beside its replacement)."""
    src, stg = tmp_path / "a", tmp_path / "stg"
    for hour, acc in ((9, 100), (10, 200)):
        write_lines(src / f"assets/scalp/20260130_{hour:02d}.jsonl",
                    [tick(ts=f"2026-01-30T{hour:02d}:30:00.5+09:00", execution_time=None, acc=acc)])
        run(src, target_url, stg)
    write_lines(src / "assets/scalp/20260130_11.jsonl", [
        tick(ts="2026-01-30T09:30:00.5+09:00", execution_time="092959", acc=100),
        tick(ts="2026-01-30T10:30:00.5+09:00", execution_time="102959", acc=200),
    ])
    run(src, target_url, stg)
    one = f"sqlite:///{tmp_path / 'one.db'}"
    run(src, one, tmp_path / "one-stg")
    assert staged_snapshot(stg) == staged_snapshot(tmp_path / "one-stg")
    assert len(staged_snapshot(stg)["scalp_ticks"]) == 2


def test_late_trades_between_staged_ones_give_every_tick_volume_of_one_run(tmp_path: Path, target_url: str) -> None:
    """Two late trades (200, 300) among three staged ones (100, 250, 400): tick_volume is recomputed from
    the first new one in volume order, and the staged trade before it gives it its value."""
    src, stg = tmp_path / "a", tmp_path / "stg"
    write_lines(src / "assets/scalp/20260130_09.jsonl", [
        tick(ts=f"2026-01-30T09:{m:02d}:00.5+09:00", execution_time=f"09{m:02d}00", acc=a) for m, a in ((31, 100), (33, 250), (36, 400))
    ])
    run(src, target_url, stg)
    write_lines(src / "assets/scalp/20260130_10.jsonl", [
        tick(ts=f"2026-01-30T09:{m:02d}:00.5+09:00", execution_time=f"09{m:02d}00", acc=a) for m, a in ((32, 200), (34, 300))
    ])
    run(src, target_url, stg)
    got = rows(target_url, "SELECT acc_volume, tick_volume FROM scalp_ticks ORDER BY acc_volume")
    assert got == [(100, None), (200, 100), (250, 50), (300, 50), (400, 100)]


def test_a_simplified_universe_document_counts_as_written_at_kst_midnight_of_its_file_date(
    tmp_path: Path, target_url: str
) -> None:
    """Its file name's date at 00:00 KST is 15:00 UTC the day before: a document generated at 05:00 KST
    that morning is newer and wins the date both name."""
    src = tmp_path / "a"
    write_lines(src / "universe/20260131_kr_stocks.json", [json.dumps({"metadata": {"date": "20260130"}, "symbols": ["373220"]})])
    write_lines(src / "universe/20260130_kr_stocks.json", [_universe_doc("2026-01-30", ["000660"], "2026-01-31T05:00:00")])
    run(src, target_url, tmp_path / "stg")
    assert _membership(target_url) == [("2026-01-30", "000660", "universe/20260130_kr_stocks.json")]


def test_units_and_commit_groups_keep_to_their_limits() -> None:
    """``_cap``: groups in order, each within the limit unless one item alone is bigger. ``_commit_groups``:
    a date's units of different kinds share a commit within the limit; two units of one kind never do."""
    from datetime import date

    from engine.pipeline import _cap, _commit_groups, _Read
    from engine.scan import ArchiveFile
    from schemas.records import Kind

    assert _cap([3, 3, 3, 9, 1, 1], 6, lambda n: n) == [[3, 3], [3], [9], [1, 1]]
    assert _cap([], 6, lambda n: n) == [[]]

    def unit(day: int, kind: Kind, size: int) -> list[_Read]:
        f = ArchiveFile(Path("x"), f"x{day}{kind.value}", kind, kind.value, date(2026, 1, day), "", size, 0)
        return [_Read(f, 0, 1, False)]

    scalp, swing = Kind.SCALP, Kind.SWING
    units = [unit(29, scalp, 4), unit(29, swing, 2), unit(30, scalp, 3), unit(30, scalp, 1), unit(30, swing, 1),
             unit(31, swing, 5), unit(31, scalp, 5)]
    # 29: scalp + swing together; 30: two scalp units apart, the second with the swing; 31: over the limit
    assert _commit_groups(units, 6) == [2, 1, 2, 1, 1]


@pytest.mark.parametrize("order", ["all, then markets", "markets, then all"])
def test_universe_dates_agree_when_market_runs_and_all_markets_runs_share_a_staging(
    tmp_path: Path, target_url: str, order: str
) -> None:
    """Scopes write one another's dates: a document dated anew by one scope left its old date to the
    other, and a version reverted after another scope loaded a newer one was skipped as 'loaded'. The
    universe is decided from every scope's manifest and from what the staged partitions hold."""
    src, stg = tmp_path / "a", tmp_path / "stg"
    master = tmp_path / "m.csv"
    master.write_text("symbol,market\n005930,KOSPI\n000660,KOSDAQ\n035720,KOSPI\n373220,KOSDAQ\n")
    doc = src / "universe/20260129_kr_stocks.json"
    first, then = ([None], ["KOSPI", "KOSDAQ"]) if order == "all, then markets" else (["KOSPI", "KOSDAQ"], [None])

    def runs(markets: list[str | None]) -> None:
        for m in markets:
            run(src, target_url, stg, security_master=master, **({"market": m} if m else {}))

    cleans = iter(range(9))

    def clean() -> list[tuple[str, str, str]]:  # one all-markets run over the archive as it is now
        n = next(cleans)
        url = f"sqlite:///{tmp_path / f'clean{n}.db'}"
        run(src, url, tmp_path / f"clean-stg{n}", security_master=master)
        return _membership(url)

    write_lines(doc, [_universe_doc("2026-01-29", ["005930", "000660"], "2026-01-29T17:00:00")])
    runs(first)
    write_lines(doc, [_universe_doc("2026-01-30", ["005930", "000660"], "2026-01-30T17:00:00")])  # dated anew
    runs(then)
    assert _membership(target_url) == clean()
    v1 = doc.read_bytes()
    write_lines(doc, [_universe_doc("2026-01-30", ["035720", "373220"], "2026-01-30T18:00:00")])
    runs(first)
    doc.write_bytes(v1)  # the earlier version back, byte for byte
    runs(then)
    assert _membership(target_url) == clean()
    assert {sym for _, sym, _ in _membership(target_url)} == {"005930", "000660"}
