"""The archive generator itself: deterministic, self-consistent, and exactly as dirty as the contract says.

An independent oracle below re-reads a generated archive byte by byte and derives, from the contract
rules alone, what an ETL must report; the generator's own ``Expected`` must agree with it line for line.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bench.generate import (
    REASONS,
    Expected,
    _k1_body,
    _k1_corrupt_body,
    expected_path,
    generate_archive,
    load_expected,
    main,
)

REPO = Path(__file__).resolve().parent.parent
KST = timezone(timedelta(hours=9))
SYMBOL = re.compile(r"^[0-9A-Z]{6}$")
MARKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # written out again: an oracle of its own
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]")  # an execution_time only a test harness writes
TEST_SOURCES = {"websocket_test", "mock", "test"}
TEST_SESSIONS = {"docker_test_session", "docker_volume_test", "quick_test"}
WINDOW = (datetime(2026, 1, 25, 11, 10, tzinfo=KST), datetime(2026, 1, 28, 0, 49, tzinfo=KST))
HOURLY = re.compile(r"^(\d{8})_(\d{2})\.jsonl$")
DAILY = re.compile(r"^(\d{8})\.jsonl$")


# -- the oracle -------------------------------------------------------------------------------------------------
def _instant(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=KST)  # naive means KST


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _hhmmss(x: Any) -> bool:
    return isinstance(x, str) and bool(re.fullmatch(r"\d{6}", x)) and int(x[:2]) < 24 and int(x[2:4]) < 60 \
        and int(x[4:]) < 60


def problems(kind: str, rec: Any) -> list[str]:
    """Every reject reason that applies to a decoded line, in precedence order (not only the first)."""
    if not isinstance(rec, dict):
        return ["not_an_object"]
    out = []
    price = rec.get("price")
    if kind == "scalp":
        if any(k in rec and not isinstance(rec[k], dict) for k in ("price", "volume", "bid_ask")):
            return ["bad_field_type"]
        session = rec.get("session_id")
    else:
        vol = rec.get("volume")
        if ("price" in rec and not isinstance(price, dict)) or (vol is not None and not isinstance(vol, (int, float))):
            return ["bad_field_type"]
        session = rec.get("session")
    symbol = rec.get("symbol")
    if rec.get("source") in TEST_SOURCES or session in TEST_SESSIONS \
            or (isinstance(session, str) and session.startswith("test_session")) or "test_marker" in rec \
            or (isinstance(symbol, str) and symbol.startswith("TEST")) \
            or (kind == "scalp" and isinstance(rec.get("execution_time"), str) and ISO_DATE.match(rec["execution_time"])):
        out.append("test_row")
    price = price or {}
    ts = _instant(rec.get("timestamp" if kind == "scalp" else "ts"))
    if kind == "scalp":
        if ts is not None and WINDOW[0] <= ts < WINDOW[1]:
            out.append("corrupt_parser_window")
        p = price["current"] if "current" in price else price.get("close")
        volume = rec.get("volume") or {}
        acc = volume.get("accumulated")
        required = (rec.get("timestamp"), symbol, p, acc)
    else:
        p, acc = price.get("close"), rec.get("volume")
        required = (rec.get("ts"), symbol, p, acc)
    if any(x is None for x in required):
        out.append("missing_field")
    if symbol is not None and not (isinstance(symbol, str) and SYMBOL.match(symbol)):
        out.append("bad_symbol")
    market = rec.get("market") if kind == "swing" else None
    if isinstance(market, str) and not MARKET.match(market):
        out.append("bad_market")
    raw_ts = rec.get("timestamp" if kind == "scalp" else "ts")
    et = rec.get("execution_time")
    if (raw_ts is not None and ts is None) or (kind == "scalp" and et is not None and not _hhmmss(et)):
        out.append("bad_timestamp")
    if p is not None and (not _is_int(p) or p <= 0):
        out.append("bad_price")
    values = [acc] + ([rec["volume"].get("trade_value")] if kind == "scalp" and isinstance(rec.get("volume"), dict)
                      else [])
    if any(v is not None and (not _is_int(v) or v < 0) for v in values) or (kind == "scalp" and acc == 0 and not isinstance(acc, bool)):
        out.append("bad_volume")
    return out


def _file_key(kind: str, name: str) -> tuple[Any, ...]:
    if m := HOURLY.match(name):
        return (m.group(1), int(m.group(2)))
    m = DAILY.match(name)
    assert m, name
    return (m.group(1), -1) if kind == "scalp" else (m.group(1),)


def oracle(root: Path) -> tuple[Expected, list[tuple[str, int, str, list[str]]]]:
    """What an ETL must report for ``root``, from the files alone; also every reject's full problem list."""
    exp = Expected()
    detail: list[tuple[str, int, str, list[str]]] = []
    keys: dict[str, Counter[Any]] = {"scalp": Counter(), "swing": Counter()}
    for kind in ("scalp", "swing"):
        files = sorted((root / "assets" / kind).glob("*.jsonl"), key=lambda p: _file_key(kind, p.name))
        exp.files[kind] = len(files)
        for path in files:
            rel = path.relative_to(root).as_posix()
            data = path.read_bytes()
            pieces = data.split(b"\n")
            unterminated = pieces.pop() if pieces else b""
            lines = [(p, True) for p in pieces] + ([(unterminated, False)] if unterminated else [])
            for n, (raw, terminated) in enumerate(lines, 1):
                exp.lines_total += 1
                try:
                    rec = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    rec = None
                    probs = ["invalid_json"]
                else:
                    probs = problems(kind, rec)
                    assert json.dumps(rec, ensure_ascii=False).encode() == raw, f"{rel}:{n} not json.dumps-canonical"
                if not terminated and path == files[-1]:
                    assert probs == ["invalid_json"], f"{rel}:{n}: a held-back line is an incomplete record"
                    exp.held_back += 1
                    continue
                if not terminated:  # a finished file's last line without its newline, whatever it holds
                    probs = ["truncated_line"]
                if probs:
                    exp.rejects.append((rel, n, probs[0]))
                    detail.append((rel, n, probs[0], probs))
                    continue
                if kind == "scalp":
                    ts = _instant(rec["timestamp"])
                    assert ts is not None
                    keys[kind][(rec["symbol"], ts.astimezone(KST).date(), rec.get("execution_time"),
                                rec["volume"]["accumulated"])] += 1
                else:
                    keys[kind][(rec["symbol"], _instant(rec["ts"]))] += 1
    exp.scalp_ticks, exp.swing_snapshots = len(keys["scalp"]), len(keys["swing"])
    exp.duplicates = {k: sum(keys[k].values()) - len(keys[k]) for k in keys}
    exp.reject_counts = {r: n for r, n in Counter(r for _, _, r in exp.rejects).items()}
    for path in sorted((root / "universe").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert "source_strategy" not in doc["metadata"]
        d = doc["metadata"]["date"].replace("-", "")
        exp.universe[f"{d[:4]}-{d[4:6]}-{d[6:]}"] = sorted(doc["symbols"])
        exp.files["universe"] += 1
    exp.files["skipped"] = len(list((root / "symbols").glob("*.json"))) + len(list((root / "logs").rglob("*.jsonl")))
    return exp, detail


def assert_oracle_agrees(root: Path, exp: Expected) -> list[tuple[str, int, str, list[str]]]:
    got, detail = oracle(root)
    exp.check()
    assert got.lines_total == exp.lines_total
    assert got.held_back == exp.held_back
    assert got.rejects == exp.rejects
    assert got.reject_counts == exp.reject_counts
    assert got.duplicates == exp.duplicates
    assert (got.scalp_ticks, got.swing_snapshots) == (exp.scalp_ticks, exp.swing_snapshots)
    assert got.universe == exp.universe
    assert got.files == exp.files
    return detail


# -- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Expected]:
    root = tmp_path_factory.mktemp("gen") / "archive"
    return root, generate_archive(root)


def _lines(root: Path, pattern: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(root.glob(pattern)):
        for raw in path.read_bytes().split(b"\n"):
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(rec, dict):
                out.append((path.name, rec))
    return out


# -- tests ------------------------------------------------------------------------------------------------------
def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = generate_archive(tmp_path / "a", days=5, ticks_per_hour=120)
    b = generate_archive(tmp_path / "b", days=5, ticks_per_hour=120, workers=2)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert a == b
    assert expected_path(tmp_path / "a").read_text() == expected_path(tmp_path / "b").read_text()
    c = generate_archive(tmp_path / "c", days=5, ticks_per_hour=120, seed=8)
    assert c != a


def test_expected_is_saved_next_to_the_archive(sample: tuple[Path, Expected]) -> None:
    root, exp = sample
    assert expected_path(root) == root.parent / "archive.expected.json"
    assert load_expected(root) == exp
    assert not list(root.glob("*.json"))


def test_invariant_and_oracle(sample: tuple[Path, Expected]) -> None:
    root, exp = sample
    assert exp.lines_total == (exp.held_back + len(exp.rejects) + exp.duplicates["scalp"] + exp.duplicates["swing"]
                               + exp.scalp_ticks + exp.swing_snapshots)
    assert_oracle_agrees(root, exp)


def test_every_reason_appears_and_each_dirty_line_has_one_problem(sample: tuple[Path, Expected]) -> None:
    root, exp = sample
    assert list(exp.reject_counts) == list(REASONS)  # all of them, in precedence order
    assert exp.held_back == 2 and exp.duplicates["scalp"] > 0 and exp.duplicates["swing"] > 0
    for rel, n, reason, probs in assert_oracle_agrees(root, exp):
        if reason not in ("test_row", "corrupt_parser_window"):  # precedence resolves those overlaps
            assert probs == [reason], f"{rel}:{n} has {probs}"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"days": 6, "symbols": 4, "ticks_per_hour": 40, "seed": 11},  # what tests/conftest.py uses
        {"start": date(2026, 1, 28), "days": 1, "ticks_per_hour": 300},
        {"start": date(2026, 1, 24), "days": 2, "symbols": 3},  # a weekend only: swing, no scalp
        {"start": date(2026, 1, 26), "days": 2, "ticks_per_hour": 50},  # inside the corrupt window
        {"days": 4, "symbols": 30, "ticks_per_hour": 400, "growing": False},
        {"dirt": False},
    ],
)
def test_oracle_agrees_on_other_shapes(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    root = tmp_path / "archive"
    exp = generate_archive(root, **kwargs)
    assert_oracle_agrees(root, exp)
    if kwargs.get("growing") is False:
        assert exp.held_back == 0
    if kwargs.get("dirt") is False:
        assert exp.rejects == [] and exp.duplicates == {"scalp": 0, "swing": 0}
        assert exp.lines_total == exp.held_back + exp.scalp_ticks + exp.swing_snapshots


def test_corrupt_window_lines(sample: tuple[Path, Expected]) -> None:
    root, exp = sample
    corrupt = {(f, n) for f, n, r in exp.rejects if r == "corrupt_parser_window"}
    assert len(corrupt) > 100
    assert {f[13:21] for f, _ in corrupt} == {"20260126", "20260127"}
    seen = 0
    for rel, recs in [(p.relative_to(root).as_posix(), p.read_bytes().split(b"\n"))
                      for p in sorted((root / "assets" / "scalp").glob("2026012[67]_*.jsonl"))]:
        for n, raw in enumerate(recs, 1):
            if not raw:
                continue
            rec = json.loads(raw)
            assert (rel, n) in corrupt
            # Shifted by one field: the symbol holds the trade time, execution_time the price, price.current
            # a sign code, volume.accumulated the best ask.
            assert _hhmmss(rec["symbol"]) and rec["execution_time"].isdigit()
            assert rec["price"]["current"] in (1, 2, 3, 4, 5)
            sec = _instant(rec["timestamp"]).astimezone(KST)
            trade = datetime.combine(sec.date(), datetime.strptime(rec["symbol"], "%H%M%S").time(), KST)
            assert timedelta(0) <= sec - trade < timedelta(seconds=2)
            seen += 1
    assert seen == len(corrupt)


def test_layout_and_shapes(sample: tuple[Path, Expected]) -> None:
    root, exp = sample
    names = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    for rel in names:
        assert re.fullmatch(
            r"assets/scalp/\d{8}(_(09|1[0-5]))?\.jsonl|assets/swing/\d{8}\.jsonl|universe/\d{8}_kr_stocks\.json"
            r"|symbols/(\d{8}_kr_stocks|symbols_\d{8}_(AM|PM))\.json|logs/system/gap_\d{8}\.jsonl", rel), rel
    days = [date(2026, 1, 22) + timedelta(days=i) for i in range(8)]
    weekdays = [d for d in days if d.weekday() < 5]
    for d in days:
        assert f"assets/swing/{d:%Y%m%d}.jsonl" in names and f"universe/{d:%Y%m%d}_kr_stocks.json" in names
        assert f"symbols/{d:%Y%m%d}_kr_stocks.json" in names
    assert {r[13:21] for r in names if HOURLY.match(r[13:])} == {f"{d:%Y%m%d}" for d in weekdays}
    assert {r for r in names if DAILY.match(r.split("/")[-1]) and r.startswith("assets/scalp")} == \
        {"assets/scalp/20260128.jsonl"}
    assert json.loads((root / "symbols/20260122_kr_stocks.json").read_text())["metadata"]["source_strategy"]
    assert "삼성전자" in (root / "symbols/20260122_kr_stocks.json").read_text(encoding="utf-8")
    simplified = json.loads((root / "universe/20260124_kr_stocks.json").read_text())
    assert simplified["metadata"] == {"date": "20260124", "count": 6}
    full = json.loads((root / "universe/20260123_kr_stocks.json").read_text())
    assert full["metadata"]["filter_criteria"] == {"min_price": 4000, "prev_trading_day": "2026-01-23"}
    assert full["symbols"] == sorted(full["symbols"]) == exp.universe["2026-01-23"]
    assert (root / "universe/20260123_kr_stocks.json").read_text().startswith('{\n  "metadata": {\n')

    ticks = _lines(root, "assets/scalp/*.jsonl")
    v0 = [r for f, r in ticks if f < "20260125"]
    cur = [r for f, r in ticks if "20260128_" in f or "20260129_" in f]
    assert v0 and all(list(r) == ["timestamp", "symbol", "price", "volume", "source", "session_id"] for r in v0
                      if r.get("source") == "websocket" and "test_marker" not in r and "timestamp" in r
                      and "symbol" in r and not r["session_id"].startswith(("test", "quick", "docker")))
    assert all(set(r["price"]) == {"close", "open", "high", "low", "change_rate"} for r in v0
               if isinstance(r.get("price"), dict))
    contract = ["timestamp", "symbol", "execution_time", "price", "volume", "bid_ask", "source", "session_id"]
    assert sum(list(r) == contract for r in cur) > 0.95 * len(cur)
    assert any(r.get("bid_ask") == {} for r in cur)
    assert any(r.get("execution_time") is None and "execution_time" in r for r in cur)
    assert any(isinstance(r.get("volume"), dict) and r["volume"].get("trade_value", 0) is None for r in cur)
    stamps = [r["timestamp"] for _, r in ticks if isinstance(r.get("timestamp"), str)]
    assert any(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+09:00", s) for s in stamps)  # no fraction at 0 µs
    assert any(s.endswith("+00:00") for s in stamps)  # the misconfigured host
    values = [r["volume"]["trade_value"] for r in cur if isinstance(r.get("volume"), dict)
              and _is_int(r["volume"].get("trade_value"))]
    assert max(values) > 2e12 and any(2**31 < v < 2e12 for v in values)
    sessions = {r["session_id"] for r in cur if str(r.get("session_id")).startswith("observer-")}
    assert all(re.fullmatch(r"observer-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", s)
               for s in sessions)
    assert 4 <= len(sessions) <= 6  # a new one at each restart: one or two a day
    for r in cur:  # day running open/high/low consistent with the prices
        if r.get("source") == "websocket" and isinstance(r.get("price"), dict) and _is_int(r["price"].get("current")) \
                and r["price"]["current"] > 0 and len(r["price"]) == 5:
            pr = r["price"]
            assert pr["low"] <= pr["current"] <= pr["high"] and pr["low"] <= pr["open"] <= pr["high"]
    # a trade at 09:59:59 received just after 10:00 sits in the _10 file
    assert any(f == "20260122_10.jsonl" and r["timestamp"].startswith("2026-01-22T10:00:00.2")
               for f, r in ticks if isinstance(r.get("timestamp"), str))
    stragglers = [r for f, r in ticks if f.endswith("_15.jsonl")]
    assert stragglers and all("15:00:00" <= r["timestamp"][11:19] <= "15:00:30" for r in stragglers)

    # a restart re-sends the last trades under the new session, here across an hour boundary
    homes: dict[tuple[Any, ...], set[str]] = {}
    for f, r in ticks:
        if f.startswith("20260122_") and isinstance(r.get("volume"), dict) and isinstance(r.get("symbol"), str):
            homes.setdefault((r["symbol"], r["volume"].get("accumulated")), set()).add(f)
    assert any(files == {"20260122_10.jsonl", "20260122_11.jsonl"} for files in homes.values())
    # a process died mid-line; the next one appended its first record to that same line
    merged = [raw for p in (root / "assets/scalp").glob("*_*.jsonl") for raw in p.read_bytes().split(b"\n")
              if raw.count(b'{"timestamp"') == 2]
    assert len(merged) >= 2

    manual = [r for f, r in ticks if f == "20260128.jsonl"]
    assert manual and all(r["session_id"] == "live_scalp_test" and list(r["volume"]) == ["tick", "accumulated",
                                                                                         "trade_value"] for r in manual)
    assert any(r["price"]["current"] is None for r in manual)
    ws_keys = {(r["symbol"], r["execution_time"], r["volume"]["accumulated"]) for f, r in ticks
               if f.startswith("20260128_") and isinstance(r.get("volume"), dict) and "accumulated" in r["volume"]}
    overlap = [r for r in manual if (r["symbol"], r["execution_time"], r["volume"]["accumulated"]) in ws_keys]
    assert 0 < len(overlap) < len(manual)


def test_swing_shapes(sample: tuple[Path, Expected]) -> None:
    root, _ = sample
    rows = _lines(root, "assets/swing/*.jsonl")
    keys = ["ts", "session", "dataset", "market", "symbol", "price", "volume", "bid_price", "ask_price", "source"]
    good = [(f, r) for f, r in rows if list(r) == keys and r["source"] == "kis" and isinstance(r["price"], dict)]
    assert len(good) > 0.99 * len(rows)
    assert all(r["dataset"] == "track_a_swing" and r["market"] in ("kr_stocks", "../kr_stocks") and r["bid_price"] is None
               for _, r in good)
    assert sum(r["market"] == "kr_stocks" for _, r in good) > 0.99 * len(rows)
    assert all(r["ts"].endswith("Z") for f, r in good if f < "20260126")
    assert all(r["ts"].endswith("+09:00") for f, r in good if f >= "20260126" and isinstance(r["ts"], str))
    first = [r for f, r in good if f == "20260122.jsonl"]
    assert first[0]["ts"].startswith("2026-01-21T22:29:")  # the manual 07:29 KST cycle, in UTC
    by_file: dict[str, set[str]] = {}
    for f, r in good:
        by_file.setdefault(f, set()).add(r["ts"][:16])
    assert len(by_file["20260129.jsonl"]) > 1.7 * len(by_file["20260128.jsonl"])  # 5-minute cycles
    # the weekend repeats Friday's closing quotes (after the 15:30 auction) all day
    sat = {(json.dumps(r["price"]), r["volume"]) for f, r in good if f == "20260124.jsonl" and r["symbol"] == "005930"}
    assert len(sat) == 1
    close_price, close_volume = json.loads(next(iter(sat))[0]), next(iter(sat))[1]
    fri = [r for f, r in good if f == "20260123.jsonl" and r["symbol"] == "005930"][-1]
    assert fri["price"]["open"] == close_price["open"] and fri["volume"] < close_volume
    assert close_price["low"] <= fri["price"]["low"] <= fri["price"]["high"] <= close_price["high"]
    twice = Counter((r["symbol"], r["ts"]) for f, r in good if f == "20260127.jsonl")
    copies = [k for k, n in twice.items() if n == 2]
    assert copies
    sessions = {r["session"] for f, r in good if f == "20260127.jsonl" and (r["symbol"], r["ts"]) in copies}
    assert len(sessions) == 2


def test_fast_paths_equal_the_line_builders(sample: tuple[Path, Expected]) -> None:
    """The tick loop formats lines inline for speed; they must match the builders used elsewhere."""
    root, _ = sample
    checked: Counter[str] = Counter()
    for _f, r in _lines(root, "assets/scalp/*_*.jsonl"):
        probs = problems("scalp", r)
        session = str(r.get("session_id"))
        if probs[:1] not in ([], ["corrupt_parser_window"]) or not session.startswith("observer-") \
                or not r["timestamp"].endswith("+09:00"):
            continue
        pr, vol, line, tail = r["price"], r["volume"], json.dumps(r, ensure_ascii=False), session + '"}'
        if probs:
            ba = r["bid_ask"]
            body = _k1_corrupt_body(r["timestamp"], r["symbol"], int(r["execution_time"]), pr["current"], pr["open"],
                                    pr["high"], pr["low"], pr["change_rate"], vol["accumulated"], vol["trade_value"],
                                    ba["ask_price"], ba["bid_price"])
            kind = "corrupt"
        elif "close" in pr:
            body = _k1_body(False, r["timestamp"], r["symbol"], "", pr["close"], pr["open"], pr["high"], pr["low"],
                            pr["change_rate"], vol["accumulated"], 0, "")
            kind = "v0"
        elif r["execution_time"] is None or vol["trade_value"] is None:
            continue  # edited through json.dumps, not the fast path
        else:
            body = _k1_body(True, r["timestamp"], r["symbol"], r["execution_time"], pr["current"], pr["open"],
                            pr["high"], pr["low"], pr["change_rate"], vol["accumulated"], vol["trade_value"],
                            json.dumps(r["bid_ask"]))
            kind = "current"
        assert body + tail == line
        checked[kind] += 1
    assert min(checked[k] for k in ("corrupt", "v0", "current")) > 500, checked


def test_change_rate_is_against_one_previous_close(sample: tuple[Path, Expected]) -> None:
    root, exp = sample
    implied: dict[tuple[str, str], list[float]] = {}
    for f, r in _lines(root, "assets/scalp/2026012[2389]_*.jsonl"):
        pr = r.get("price")
        if r.get("source") == "websocket" and isinstance(pr, dict) and len(pr) == 5 \
                and r.get("symbol") in exp.universe["2026-01-22"]:
            p = pr.get("current", pr.get("close"))
            if _is_int(p) and p > 0 and pr["change_rate"] > -99:
                implied.setdefault((f[:8], r["symbol"]), []).append(p * 100 / (100 + pr["change_rate"]))
    assert len(implied) == 4 * 6
    for key, values in implied.items():
        mid = sorted(values)[len(values) // 2]
        assert all(abs(v / mid - 1) < 2e-4 for v in values), key


def test_lines_option(tmp_path: Path) -> None:
    out = tmp_path / "big"
    subprocess.run([sys.executable, "-m", "bench.generate", "--out", str(out), "--lines", "100000"], cwd=REPO,
                   check=True, capture_output=True)
    exp = load_expected(out)
    assert 90_000 <= exp.lines_total <= 110_000
    total = sum(len(p.read_bytes().splitlines()) for p in (out / "assets").rglob("*.jsonl"))
    assert total == exp.lines_total


def test_refuses_to_mix_with_existing_files(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate_archive(root, days=1)
    with pytest.raises(FileExistsError):
        generate_archive(root, days=1, overwrite=True)  # not an archive: never removed
    assert (root / "notes.txt").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lines", "0"], "--lines must be at least 1"),
        (["--days", "0"], "--days must be at least 1"),
        (["--ticks-per-hour", "-5"], "--ticks-per-hour must be at least 1"),
        (["--lines", "1000", "--days", "2", "--start", "2026-01-24"], "no weekday in the date range"),
    ],
)
def test_command_line_mistakes_are_one_usage_error(
    tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "archive"), *extra])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "archive").exists()


@pytest.mark.parametrize("taken", ["not empty", "not writable"])
def test_an_out_that_cannot_be_used_is_one_sentence(tmp_path: Path, taken: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "archive" if taken == "not empty" else Path("/proc/archive")
    if taken == "not empty":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(out), "--days", "1"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err
    assert ("is not empty" if taken == "not empty" else f"cannot generate {out}: No such file or directory") in err
