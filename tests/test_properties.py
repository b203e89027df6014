"""Invariants: any split of the archive into runs, in any order, gives the database of one run."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Iterator
from unittest import mock

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.scan import date_from_digits
from schemas.tables import SCALP_TICKS
from tests.archive_timeline import copy_files, materialize, timeline, total_bytes
from tests.conftest import pg_database_url
from tests.support import VOLATILE, db_frames, db_snapshot, rows, run, staged_frame, staged_snapshot

SETTINGS = settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@contextlib.contextmanager
def fresh_target(dialect: str, work: Path) -> Iterator[str]:
    if dialect == "sqlite":
        yield f"sqlite:///{work / 'trading.db'}"
    else:
        gen = pg_database_url()
        url = next(gen)
        try:
            yield url
        finally:
            with contextlib.suppress(StopIteration):
                next(gen)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def reference(request: pytest.FixtureRequest, generated, tmp_path_factory):  # type: ignore[no-untyped-def]
    """One run over the whole archive: the database every other way of loading must reproduce."""
    root, expected = generated
    work = tmp_path_factory.mktemp("ref")
    with fresh_target(request.param, work) as url:
        s = run(root, url, work / "stg").to_dict()
        again = run(root, url, work / "stg").to_dict()
        assert again["lines_read"] == 0
        return request.param, root, db_snapshot(url), staged_snapshot(work / "stg"), s


def test_one_run_matches_the_generators_truth(reference, generated) -> None:  # type: ignore[no-untyped-def]
    _, _, db, _, s = reference
    _, exp = generated
    assert s["held_back"] == exp.held_back
    assert s["lines_read"] == exp.lines_total - exp.held_back
    assert s["duplicates"] == exp.duplicates["scalp"] + exp.duplicates["swing"]
    assert len(db["scalp_ticks"]) == exp.scalp_ticks
    assert len(db["swing_snapshots"]) == exp.swing_snapshots
    rejects = sorted((r[0], r[1], r[3]) for r in db["etl_rejects"])  # source_file, line_number, reason
    assert rejects == sorted((f, n, why) for f, n, why in exp.rejects)
    universe: dict[str, list[str]] = {}
    for symbol, _market, day, *_ in db["market_universe"]:
        universe.setdefault(str(day), []).append(symbol)
    assert {d: sorted(s) for d, s in universe.items()} == exp.universe


@SETTINGS
@given(data=st.data())
def test_any_split_into_growing_runs(reference, data) -> None:  # type: ignore[no-untyped-def]
    dialect, root, want_db, want_staged, _ = reference
    pieces = timeline(root)
    cuts = sorted(data.draw(st.lists(st.integers(0, total_bytes(pieces)), min_size=1, max_size=4)))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with fresh_target(dialect, work) as url:
            for cut in [*cuts, total_bytes(pieces)]:
                materialize(work / "archive", pieces, cut)
                run(work / "archive", url, work / "stg")
            assert run(work / "archive", url, work / "stg").to_dict()["lines_read"] == 0
            assert db_snapshot(url) == want_db
            assert staged_snapshot(work / "stg") == want_staged


@SETTINGS
@given(data=st.data())
def test_a_last_line_finished_after_the_next_file_began(reference, data) -> None:  # type: ignore[no-untyped-def]
    """The rotation race: a file's last line is cut anywhere while the files after it are written (so
    runs see it superseded and unterminated), and finished only at the end; any runs in between."""
    dialect, root, want_db, want_staged, _ = reference
    pieces = timeline(root)
    series = [p for p, nxt in zip(pieces, pieces[1:]) if not p.whole and p.data.endswith(b"\n") and not nxt.whole
              and p.rel.rsplit("/", 1)[0] == nxt.rel.rsplit("/", 1)[0]]
    late = data.draw(st.sampled_from(series))
    line_start = late.data.rfind(b"\n", 0, len(late.data) - 1) + 1
    hold = data.draw(st.integers(line_start, len(late.data) - 1))  # up to a whole record without its newline
    after = late.start + len(late.data)
    cuts = sorted(data.draw(st.lists(st.integers(after, total_bytes(pieces)), min_size=1, max_size=3)))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with fresh_target(dialect, work) as url:
            for cut in [*cuts, total_bytes(pieces)]:
                materialize(work / "archive", pieces, cut, late={late.rel: hold})
                run(work / "archive", url, work / "stg")
            assert run(work / "archive", url, work / "stg").to_dict()["lines_read"] == 0
            assert db_snapshot(url) == want_db
            assert staged_snapshot(work / "stg") == want_staged


@SETTINGS
@given(data=st.data())
def test_whole_files_in_any_order(reference, data) -> None:  # type: ignore[no-untyped-def]
    dialect, root, want_db, want_staged, _ = reference
    rels = [p.rel for p in timeline(root)]
    order = data.draw(st.permutations(rels))
    splits = sorted(data.draw(st.sets(st.integers(1, len(rels) - 1), max_size=3)))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with fresh_target(dialect, work) as url:
            for lo, hi in zip([0, *splits], [*splits, len(rels)]):
                copy_files(work / "archive", root, order[lo:hi])
                run(work / "archive", url, work / "stg")
            assert db_snapshot(url) == want_db
            assert staged_snapshot(work / "stg") == want_staged


@SETTINGS
@given(data=st.data())
def test_holiday_lists_changed_between_growing_runs_give_one_run_with_the_last(reference, data) -> None:  # type: ignore[no-untyped-def]
    """Rows are flagged as they load, with their run's holiday list, and flagged again when a later run's
    list differs: any lists over any growing runs give the database and staging of one run with the last."""
    dialect, root, _, _, _ = reference
    pieces = timeline(root)
    days = sorted({d for p in pieces if (d := date_from_digits(p.rel.rsplit("/", 1)[1][:8])) is not None})
    cuts = sorted(data.draw(st.lists(st.integers(0, total_bytes(pieces)), min_size=1, max_size=3)))
    lists = data.draw(st.lists(st.sets(st.sampled_from(days), max_size=3), min_size=len(cuts) + 1, max_size=len(cuts) + 1))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        holidays = work / "holidays.txt"
        with fresh_target(dialect, work) as url:
            for cut, listed in zip([*cuts, total_bytes(pieces)], lists):
                materialize(work / "archive", pieces, cut)
                holidays.write_text("".join(f"{d.isoformat()}\n" for d in sorted(listed)))
                run(work / "archive", url, work / "stg", holidays=holidays)
            got = db_snapshot(url), staged_snapshot(work / "stg")
        (work / "one").mkdir()
        with fresh_target(dialect, work / "one") as url:
            run(root, url, work / "one" / "stg", holidays=holidays)
            assert got == (db_snapshot(url), staged_snapshot(work / "one" / "stg"))


@pytest.mark.parametrize(
    ("unit", "chunk"),
    [(None, 3000), (3000, None), (9000, 3000)],
    ids=["files-in-chunks", "one-chunk-units", "units-of-several-chunks"],
)
def test_units_of_any_size_give_the_same_database(reference, monkeypatch, tmp_path: Path, unit, chunk) -> None:  # type: ignore[no-untyped-def]
    """Files read in chunks of a few lines, several to a unit (across files too) or one unit each
    (``--unit-size 3000``: a chunk is never bigger than a unit): the memory bounds change nothing in
    the result, reject line numbers included."""
    import engine.pipeline
    from engine import scan

    dialect, root, want_db, want_staged, want = reference
    if chunk is not None:
        monkeypatch.setattr(engine.pipeline, "CHUNK_BYTES", chunk)
    chunks: list[bool] = []
    whole = scan.read_new_bytes

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        chunks.append(args[-1] is not None)  # a chunk ends before the end of its file
        return whole(*args, **kwargs)

    monkeypatch.setattr(scan, "read_new_bytes", counted)
    with fresh_target(dialect, tmp_path) as url:
        s = run(root, url, tmp_path / "stg", **({} if unit is None else {"unit_bytes": unit})).to_dict()
        assert s["commits"] > want["commits"] or unit is None
        assert any(chunks)  # files were read in chunks (of the unit's size where no chunk size is set)
        assert db_snapshot(url) == want_db
        assert staged_snapshot(tmp_path / "stg") == want_staged


@SETTINGS
@given(unit=st.integers(2_000, 700_000), chunk=st.one_of(st.none(), st.integers(1_000, 60_000)))
def test_any_unit_size_gives_the_same_database(reference, unit: int, chunk: int | None) -> None:  # type: ignore[no-untyped-def]
    """``--unit-size`` is a memory knob and nothing else: units of 2 kB (hundreds of commits) to whole
    days, files read whole or in chunks of any size, and the database and the staged Parquet are the
    ones a run in the default units leaves (the archive is 612 kB in 38 files of up to 53 kB)."""
    import engine.pipeline

    dialect, root, want_db, want_staged, _ = reference
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(
        engine.pipeline, "CHUNK_BYTES", chunk or engine.pipeline.CHUNK_BYTES
    ):
        work = Path(tmp)
        with fresh_target(dialect, work) as url:
            run(root, url, work / "stg", unit_bytes=unit)
            assert db_snapshot(url) == want_db
            assert staged_snapshot(work / "stg") == want_staged


# A universe document's versions: (file of 4, the date it names of 3, when written, symbols); files are
# rewritten in any order, each written time unique, and the archive read after any of the writes.
_DOC_DATES = ["2026-01-29", "2026-01-30", "2026-01-31"]
_DOC_WRITE = st.tuples(
    st.integers(0, 3), st.sampled_from(_DOC_DATES), st.lists(st.sampled_from(["000660", "005930", "035720", "373220"]), max_size=3)
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(writes=st.lists(_DOC_WRITE, min_size=1, max_size=8), runs_after=st.sets(st.integers(0, 7)))
def test_universe_documents_rewritten_in_any_order(writes, runs_after) -> None:  # type: ignore[no-untyped-def]
    """The membership of every date is its newest document's, however runs met the rewrites: runs after
    any of the writes leave what one run after the last leaves."""
    import json

    def membership(url: str) -> list[tuple]:
        return rows(url, "SELECT date, symbol, source_file, generated_at FROM market_universe ORDER BY 1, 2")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src, url = work / "a", f"sqlite:///{work / 'split.db'}"
        (src / "universe").mkdir(parents=True)
        for i, (file, day, symbols) in enumerate(writes):
            doc = {"metadata": {"date": day, "generated_at": f"2026-02-01T09:{i:02d}:00"}, "symbols": symbols}
            (src / f"universe/2026012{file}_kr_stocks.json").write_text(json.dumps(doc))
            if i in runs_after:
                run(src, url, work / "stg")
        run(src, url, work / "stg")
        one = f"sqlite:///{work / 'one.db'}"
        run(src, one, work / "one-stg")
        assert membership(url) == membership(one)


# -- small archives drawn line by line (review 37: mutants that the generated archive's fixed dirt let through) --
_SYMBOLS = ["005930", "000660"]
_HOUR_FILES = ["assets/scalp/20260130_13.jsonl", "assets/scalp/20260130_14.jsonl", "assets/scalp/20260130_15.jsonl"]
_SWING_FILE = "assets/swing/20260130.jsonl"


@st.composite
def _lines(draw):  # type: ignore[no-untyped-def]
    """(file, line) of a small day, in any order: every trade in 1-3 copies (with the exchange time or not,
    received 0-2 s after it, by either of two sessions, in any hour file), both symbols' cumulative
    volumes from one small range (so they share values), swing snapshots with same-time copies."""
    from tests.support import swing, tick

    lines: list[tuple[str, str]] = []
    for sym in _SYMBOLS:
        for i, acc in enumerate(sorted(draw(st.sets(st.integers(1, 12), min_size=1, max_size=5)))):
            minute = 10 + i
            for _ in range(draw(st.integers(1, 3))):
                lines.append((
                    draw(st.sampled_from(_HOUR_FILES)),
                    tick(ts=f"2026-01-30T13:{minute}:0{draw(st.integers(0, 2))}.5+09:00", symbol=sym, acc=acc,
                         execution_time=f"13{minute}00" if draw(st.booleans()) else None,
                         session=draw(st.sampled_from(["observer-A", "observer-B"]))),
                ))
        for minute in sorted(draw(st.sets(st.integers(10, 14), max_size=2))):
            for close in draw(st.lists(st.integers(100, 103), min_size=1, max_size=2)):
                lines.append((_SWING_FILE, swing(ts=f"2026-01-30T13:{minute}:47.5+09:00", symbol=sym, close=close,
                                                 session=draw(st.sampled_from(["observer-A", "observer-B"])))))
    return [lines[i] for i in draw(st.permutations(range(len(lines))))]


def _write(root: Path, lines: list[tuple[str, str]]) -> None:
    """The archive after ``lines`` were appended in that order, every line finished."""
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    for rel, text in lines:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("a", encoding="utf-8") as fh:
            fh.write(text + "\n")


def _stamps(df: pl.DataFrame | None) -> dict[tuple, tuple]:  # type: ignore[type-arg]
    """(symbol, trade_date, acc_volume) -> (the tick row without its run columns, etl_timestamp as ISO text)."""
    if df is None:
        return {}
    return {
        (r["symbol"], r["trade_date"], r["acc_volume"]): (
            tuple(str(v) for k, v in r.items() if k not in VOLATILE), r["etl_timestamp"]
        )
        for r in df.iter_rows(named=True)
    }


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(lines=_lines(), data=st.data())
def test_lines_in_any_order_and_runs_anywhere_give_one_runs_database(dialect: str, lines, data) -> None:  # type: ignore[no-untyped-def]
    """Any interleaving of a day's lines over its files, runs after any of them: the database and staged
    Parquet of one run over the final archive. A tick row's etl_timestamp moves exactly when its content
    does (a better copy, a recomputed tick_volume), the same in the database and in staging, so a reader
    that pulls rows by etl_timestamp sees every change and nothing else."""
    cuts = sorted(data.draw(st.sets(st.integers(1, len(lines) - 1), max_size=4))) if len(lines) > 1 else []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _write(work / "a", lines)
        (work / "one").mkdir()
        with fresh_target(dialect, work / "one") as one, fresh_target(dialect, work) as url:
            run(work / "a", one, work / "one-stg")
            before: dict[tuple, tuple] = {}
            for cut in [*cuts, len(lines)]:
                _write(work / "a", lines[:cut])
                run(work / "a", url, work / "stg")
                after = _stamps(db_frames(url, [SCALP_TICKS.name])[SCALP_TICKS.name])
                for key, (content, stamp) in after.items():
                    if key in before and before[key][0] == content:
                        assert stamp == before[key][1], ("an unchanged row was stamped again", key)
                    elif key in before:
                        assert stamp > before[key][1], ("a changed row kept its etl_timestamp", key)
                staged = _stamps(staged_frame(work / "stg", SCALP_TICKS))
                assert {k: v[1] for k, v in staged.items()} == {k: v[1] for k, v in after.items()}
                before = after
            assert db_snapshot(url) == db_snapshot(one)
            assert staged_snapshot(work / "stg") == staged_snapshot(work / "one-stg")


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(lines=_lines())
def test_a_new_staging_directory_leaves_the_loaded_rows_as_they_are(dialect: str, lines) -> None:  # type: ignore[no-untyped-def]
    """The same archive through a second staging directory into the same database: every row is offered
    again, equal to the loaded one (the upsert path, with a warning), and none is written again: its
    etl_timestamp stays, or a reader pulling by etl_timestamp would pull the whole table again."""

    queries = ("SELECT symbol, acc_volume, etl_timestamp FROM scalp_ticks ORDER BY 1, 2",
               "SELECT symbol, snap_time, etl_timestamp FROM swing_snapshots ORDER BY 1, 2")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _write(work / "a", lines)
        with fresh_target(dialect, work) as url:
            run(work / "a", url, work / "stg1")
            first = [rows(url, q) for q in queries]
            s = run(work / "a", url, work / "stg2").to_dict()
            assert any("upserting instead" in w for w in s["warnings"]), s["warnings"]
            assert [rows(url, q) for q in queries] == first


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    writes=st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(["2026-01-29", "2026-01-30"]), st.integers(0, 2),
                  st.lists(st.sampled_from(["000660", "005930", "035720"]), max_size=2, unique=True)),
        min_size=1, max_size=6,
    ),
    runs_after=st.sets(st.integers(0, 5)),
)
def test_a_dates_membership_is_its_newest_document_then_the_later_file_name(writes, runs_after) -> None:  # type: ignore[no-untyped-def]
    """Against a model: each date gets the symbols of the document naming it that was written last, and
    of two written at the same time, the one whose file name sorts last. Written times are drawn from
    three, so ties are common (the test above draws each write a time of its own)."""
    import json

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src, url = work / "a", f"sqlite:///{work / 'u.db'}"
        (src / "universe").mkdir(parents=True)
        final: dict[str, tuple[str, str, list[str]]] = {}
        for i, (file, day, minute, symbols) in enumerate(writes):
            name, at = f"universe/2026012{file}_kr_stocks.json", f"2026-02-01T09:0{minute}:00"
            (src / name).write_text(json.dumps({"metadata": {"date": day, "generated_at": at}, "symbols": symbols}))
            final[name] = (day, at, symbols)
            if i in runs_after:
                run(src, url, work / "stg")
        run(src, url, work / "stg")
        want = set()
        for day in {d for d, _, _ in final.values()}:
            newest = max((at, name) for name, (d, at, _) in final.items() if d == day)[1]
            want |= {(day, s) for s in final[newest][2]}
        assert {(str(d), s) for d, s in rows(url, "SELECT date, symbol FROM market_universe")} == want
