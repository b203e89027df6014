"""Deterministic Observer archives with a known answer, for ETL tests and benchmarks.

The archive follows ``shared/spec/archive-contract.md`` byte for byte (K1 scalp ticks in all their
variants, K2 swing snapshots, K3 universe, K4 symbol master, K5 gap ledger) including its dirt. While
writing, the generator records what a correct ETL must report for every physical line (loaded,
duplicate, rejected with which reason, held back), so a test can compare counts and reject lists
exactly. Every dirty line carries exactly one problem, except where the contract's precedence makes
an overlap unavoidable (corrupt-window lines, test rows).

Usage: ``python -m bench.generate --out DIR [--lines N]``; the expected outcome is written next to
the archive as ``DIR.expected.json`` (inside it, the ETL would see an unknown file).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import shutil
import sys
import time as _time
import uuid
from bisect import bisect_left
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable

import numpy as np

from schemas.records import REJECT_REASONS

# Reject reasons of JSONL lines, in precedence order: the one vocabulary of schemas.records.
REASONS: tuple[str, ...] = tuple(r for r in REJECT_REASONS if r != "bad_universe_file")

V0_LAST_DAY = date(2026, 1, 24)  # K1 v0 shape up to and including this KST date
SWING_KST_FROM = date(2026, 1, 26)  # K2 ts as KST +09:00 from this date (before: UTC naive + "Z")
SWING_5MIN_FROM = date(2026, 1, 29)  # K2 cycles every 5 min from this date (before: 10 min)
CORRUPT_FROM = (date(2026, 1, 25), (11 * 60 + 10) * 60)  # KST date, second of day (inclusive)
CORRUPT_TO = (date(2026, 1, 28), 49 * 60)  # KST date, second of day (exclusive)

US = 1_000_000
NEVER = 1 << 62  # a time after every event
HOUR = 3600 * US
DAY = 24 * HOUR
OPEN_US = 9 * HOUR
COLLECT_FROM = 9 * HOUR + 30 * 60 * US
COLLECT_TO = 15 * HOUR
STRAGGLE_TO = 15 * HOUR + 28 * US
CLOSE_US = 15 * HOUR + 30 * 60 * US
DIRT_BEFORE = 14 * HOUR + 59 * 60 * US  # dirt never lands in the last minute: _15 files stay clean
SCALP_HOURS = 5.5  # collection hours per trading day (09:30-15:00), for --lines
MANUAL_SESSION = "live_scalp_test"  # the manual collector: real data despite the name

_HMS = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400)]
_EXEC = [f"{s // 3600:02d}{s // 60 % 60:02d}{s % 60:02d}" for s in range(86400)]

# (code, name, base price, typical daily volume). Real large caps first; the sixth is a made-up
# new-style alphanumeric code, which the contract's ^[0-9A-Z]{6}$ accepts.
_KNOWN_SYMBOLS: tuple[tuple[str, str, int, int], ...] = (
    ("005930", "삼성전자", 158400, 19_000_000),
    ("000660", "SK하이닉스", 752000, 3_600_000),
    ("373220", "LG에너지솔루션", 383500, 420_000),
    ("035420", "NAVER", 251500, 900_000),
    ("005380", "현대차", 287000, 1_100_000),
    ("0126Z0", "한빛신소재", 8450, 2_400_000),
    ("207940", "삼성바이오로직스", 1_096_000, 90_000),
    ("068270", "셀트리온", 178300, 800_000),
    ("051910", "LG화학", 312500, 350_000),
    ("035720", "카카오", 58400, 2_000_000),
    ("105560", "KB금융", 121900, 1_300_000),
    ("000270", "기아", 118700, 1_500_000),
    ("006400", "삼성SDI", 265000, 500_000),
    ("012330", "현대모비스", 341000, 250_000),
    ("055550", "신한지주", 70100, 1_900_000),
    ("066570", "LG전자", 92300, 800_000),
    ("096770", "SK이노베이션", 113600, 400_000),
    ("017670", "SK텔레콤", 55800, 600_000),
    ("015760", "한국전력", 41250, 3_000_000),
    ("086790", "하나금융지주", 88500, 1_400_000),
    ("247540", "에코프로비엠", 163900, 700_000),
    ("086520", "에코프로", 98700, 900_000),
    ("196170", "알테오젠", 452000, 300_000),
    ("003490", "대한항공", 23450, 2_100_000),
    ("034020", "두산에너빌리티", 61200, 9_000_000),
)


# --------------------------------------------------------------------------------------------------
# The answer


@dataclass
class Expected:
    """What a correct ETL reports for the generated archive (counts cover K1/K2 JSONL lines)."""

    lines_total: int = 0
    held_back: int = 0
    rejects: list[tuple[str, int, str]] = field(default_factory=list)  # (file rel. to root, line 1-based, reason)
    reject_counts: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=lambda: {"scalp": 0, "swing": 0})
    scalp_ticks: int = 0
    swing_snapshots: int = 0
    universe: dict[str, list[str]] = field(default_factory=dict)  # "YYYY-MM-DD" -> sorted symbols
    files: dict[str, int] = field(default_factory=lambda: {"scalp": 0, "swing": 0, "universe": 0, "skipped": 0})

    def check(self) -> None:
        """Every physical line lands in exactly one bucket."""
        total = (
            self.held_back
            + len(self.rejects)
            + self.duplicates["scalp"]
            + self.duplicates["swing"]
            + self.scalp_ticks
            + self.swing_snapshots
        )
        assert self.lines_total == total, f"lines_total {self.lines_total} != sum of buckets {total}"
        assert sum(self.reject_counts.values()) == len(self.rejects)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lines_total": self.lines_total,
            "held_back": self.held_back,
            "reject_counts": dict(self.reject_counts),
            "duplicates": dict(self.duplicates),
            "scalp_ticks": self.scalp_ticks,
            "swing_snapshots": self.swing_snapshots,
            "universe": {k: list(v) for k, v in self.universe.items()},
            "files": dict(self.files),
            "rejects": [list(r) for r in self.rejects],
        }

    def to_json(self) -> str:
        """Readable JSON: one universe date and one reject per line (millions at benchmark sizes)."""
        def j(x: object) -> str:
            return json.dumps(x, ensure_ascii=False)

        universe = ",".join(f"\n    {j(k)}: {j(v)}" for k, v in self.universe.items())
        rejects = ",".join([f'\n    ["{f}", {n}, "{r}"]' for f, n, r in self.rejects])  # plain ASCII paths
        parts = [
            f'"lines_total": {self.lines_total}',
            f'"held_back": {self.held_back}',
            f'"reject_counts": {j(self.reject_counts)}',
            f'"duplicates": {j(self.duplicates)}',
            f'"scalp_ticks": {self.scalp_ticks}',
            f'"swing_snapshots": {self.swing_snapshots}',
            f'"universe": {{{universe}\n  }}',
            f'"files": {j(self.files)}',
            f'"rejects": [{rejects}\n  ]',
        ]
        return "{\n  " + ",\n  ".join(parts) + "\n}\n"

    @classmethod
    def from_json(cls, text: str) -> Expected:
        d = json.loads(text)
        return cls(
            lines_total=d["lines_total"],
            held_back=d["held_back"],
            rejects=[(f, int(n), r) for f, n, r in d["rejects"]],
            reject_counts=d["reject_counts"],
            duplicates=d["duplicates"],
            scalp_ticks=d["scalp_ticks"],
            swing_snapshots=d["swing_snapshots"],
            universe=d["universe"],
            files=d["files"],
        )


def expected_path(root: Path) -> Path:
    """Where the CLI and ``generate_archive`` write the answer: next to the archive, not inside."""
    return root.parent / (root.name + ".expected.json")


def load_expected(root: Path) -> Expected:
    return Expected.from_json(expected_path(root).read_text(encoding="utf-8"))


Rec = tuple[int, str, "str | None", int]  # (write order, line text, reject reason or None, trade id)


class _Ledger:
    """Writes JSONL files and books every line: loaded, duplicate (same trade id), or rejected."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.exp = Expected()
        self.newest_key: dict[str, tuple[Any, ...]] = {}
        self.newest_rel: dict[str, str] = {}

    def write_jsonl(self, rel: str, kind: str, recs: list[Rec], seen: np.ndarray, sort_key: tuple[Any, ...],
                    truncate_last: bool = False) -> None:
        """Write ``recs`` in order; a truncated file loses the last newline, and that line is rejected."""
        exp = self.exp
        n = len(recs)
        if truncate_last:
            assert n and recs[-1][2] is None, f"{rel}: the truncated last line must be an otherwise valid record"
        exp.rejects.extend([(rel, i, r[2]) for i, r in enumerate(recs, 1) if r[2] is not None])
        if truncate_last:
            exp.rejects.append((rel, n, "truncated_line"))
        tids = np.array([r[3] for r in (recs[:-1] if truncate_last else recs) if r[2] is None], dtype=np.int64)
        fresh = np.unique(tids)
        fresh = fresh[seen[fresh] == 0]
        seen[fresh] = 1
        text = "\n".join([r[1] for r in recs]) + ("" if truncate_last or not n else "\n")
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8", "surrogateescape"))  # invalid UTF-8 dirt is written as is
        exp.lines_total += n
        exp.duplicates[kind] += len(tids) - len(fresh)
        if kind == "scalp":
            exp.scalp_ticks += len(fresh)
        else:
            exp.swing_snapshots += len(fresh)
        exp.files[kind] += 1
        if kind not in self.newest_key or sort_key > self.newest_key[kind]:
            self.newest_key[kind], self.newest_rel[kind] = sort_key, rel

    def merge(self, other: _Ledger) -> None:
        """Add the books of a day simulated elsewhere (its files are already on disk)."""
        a, b = self.exp, other.exp
        a.lines_total += b.lines_total
        a.held_back += b.held_back
        a.rejects.extend(b.rejects)
        for k in a.duplicates:
            a.duplicates[k] += b.duplicates[k]
        a.scalp_ticks += b.scalp_ticks
        a.swing_snapshots += b.swing_snapshots
        for k in a.files:
            a.files[k] += b.files[k]
        for kind, key in other.newest_key.items():
            if kind not in self.newest_key or key > self.newest_key[kind]:
                self.newest_key[kind], self.newest_rel[kind] = key, other.newest_rel[kind]

    def append_partial(self, kind: str, piece: str) -> None:
        """The newest file of a kind is still growing: its last line is incomplete (held back)."""
        assert piece and "\n" not in piece
        with open(self.root / self.newest_rel[kind], "a", encoding="utf-8", newline="") as f:
            f.write(piece)
        self.exp.lines_total += 1
        self.exp.held_back += 1

    def write_doc(self, rel: str, doc: object, kind: str) -> None:
        """Pretty-printed JSON documents (K3/K4)."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8")
        self.exp.files[kind] += 1

    def write_ledger(self, rel: str, rows: list[dict[str, Any]]) -> None:
        """K5 system ledger: not scalp/swing, so the ETL recognises and skips it."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        self.exp.files["skipped"] += 1


# --------------------------------------------------------------------------------------------------
# Formatting helpers (the collector writes json.dumps defaults; fast paths must match them exactly)


def _kst_ts(dp: str, us: int) -> str:
    """``dp`` is 'YYYY-MM-DDT'; ``us`` microseconds of the KST day. No fraction when it is zero."""
    sec, frac = divmod(us, US)
    return f"{dp}{_HMS[sec]}.{frac:06d}+09:00" if frac else f"{dp}{_HMS[sec]}+09:00"


def _utc_ts(dp_utc: str, us_utc: int) -> str:
    sec, frac = divmod(us_utc, US)
    return f"{dp_utc}{_HMS[sec]}.{frac:06d}+00:00" if frac else f"{dp_utc}{_HMS[sec]}+00:00"


def _swing_ts(d: date, us: int) -> str:
    """K2 ``ts``: UTC naive + 'Z' before 2026-01-26, KST with offset from then on."""
    if d < SWING_KST_FROM:
        return (datetime.combine(d, time()) + timedelta(microseconds=us - 9 * HOUR)).isoformat() + "Z"
    return _kst_ts(d.isoformat() + "T", us)


def _k1_body(cur: bool, ts: str, sym: str, ex: str, p: int, o: int, h: int, lo: int, cr: float, a: int,
             tv: int, ba: str) -> str:
    """A K1 line up to the session id value (append ``session + '"}'``); v0 when not ``cur``."""
    if cur:
        return (f'{{"timestamp": "{ts}", "symbol": "{sym}", "execution_time": "{ex}", "price": {{"current": {p}, '
                f'"open": {o}, "high": {h}, "low": {lo}, "change_rate": {cr}}}, "volume": {{"accumulated": {a}, '
                f'"trade_value": {tv}}}, "bid_ask": {ba}, "source": "websocket", "session_id": "')
    return (f'{{"timestamp": "{ts}", "symbol": "{sym}", "price": {{"close": {p}, "open": {o}, "high": {h}, '
            f'"low": {lo}, "change_rate": {cr}}}, "volume": {{"accumulated": {a}}}, "source": "websocket", '
            f'"session_id": "')


def _k1_corrupt_body(ts: str, ex: str, p: int, sign: int, chg: int, o: int, h: int, cr: float, ask: int,
                     bid: int, v: int, a: int) -> str:
    """The 2026-01-25..28 parser bug: every field shifted by one (symbol holds the trade time, etc.)."""
    return (f'{{"timestamp": "{ts}", "symbol": "{ex}", "execution_time": "{p}", "price": {{"current": {sign}, '
            f'"open": {chg}, "high": {o}, "low": {h}, "change_rate": {cr}}}, "volume": {{"accumulated": {ask}, '
            f'"trade_value": {bid}}}, "bid_ask": {{"ask_price": {v}, "bid_price": {a}}}, "source": "websocket", '
            f'"session_id": "')


def _manual_line(ts: str, sym: str, ex: str, p: int | None, o: int, h: int, lo: int, cr: float, v: int, a: int,
                 tv: int, ba: str) -> str:
    """The manual CLI collector: same fields, but ``volume`` carries the real tick volume."""
    pj = "null" if p is None else p
    return (f'{{"timestamp": "{ts}", "symbol": "{sym}", "execution_time": "{ex}", "price": {{"current": {pj}, '
            f'"open": {o}, "high": {h}, "low": {lo}, "change_rate": {cr}}}, "volume": {{"tick": {v}, '
            f'"accumulated": {a}, "trade_value": {tv}}}, "bid_ask": {ba}, "source": "websocket", '
            f'"session_id": "{MANUAL_SESSION}"}}')


def _swing_line(ts: str, sess: str, sym: str, o: int, h: int, lo: int, c: int, v: int) -> str:
    return (f'{{"ts": "{ts}", "session": "{sess}", "dataset": "track_a_swing", "market": "kr_stocks", '
            f'"symbol": "{sym}", "price": {{"open": {o}, "high": {h}, "low": {lo}, "close": {c}}}, "volume": {v}, '
            f'"bid_price": null, "ask_price": null, "source": "kis"}}')


def _edit(line: str, fn: Callable[[dict[str, Any]], None]) -> str:
    """Change a well-formed line through its dict; also proves the fast path equals json.dumps."""
    d = json.loads(line)
    assert json.dumps(d, ensure_ascii=False) == line, f"fast formatting drifted from json.dumps: {line}"
    fn(d)
    return json.dumps(d, ensure_ascii=False)


def _tick(p: int) -> int:
    """KRX price tick by price band."""
    if p < 2000:
        return 1
    if p < 5000:
        return 5
    if p < 20000:
        return 10
    if p < 50000:
        return 50
    if p < 200000:
        return 100
    if p < 500000:
        return 500
    return 1000


def _snap(p: float) -> int:
    """Round down onto the KRX tick grid."""
    q = max(1, int(p))
    return q - q % _tick(q)


def _snap_up(p: float) -> int:
    """Round up onto the KRX tick grid."""
    q = _snap(p)
    return q if q >= p else q + _tick(q)


def _session(rng: random.Random) -> str:
    return "observer-" + str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _cut(line: str, rng: random.Random) -> str:
    """A prefix of a record that is certainly not complete JSON (a crash mid-write)."""
    return line[: rng.randint(min(12, len(line) - 2), len(line) - 3)]


# --------------------------------------------------------------------------------------------------
# Dirt: K1 and K2 variants, applied in rotation so that small archives still carry all of them.

_GARBAGE = (
    "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    "웹소켓 연결 끊김: 재연결 시도 중 (code=1006)",
    "Traceback (most recent call last):",
)
_NOT_OBJECT = ("[1, 2]", '"x"', "null", "42")

# (reason, variant). "+" variants insert an extra line after the trade's (the trade stays valid);
# the others replace the trade's line.
_K1_VARIANTS: tuple[tuple[str, str], ...] = (
    ("invalid_json", "+garbage0"),
    ("not_an_object", "+obj0"),
    ("bad_field_type", "price_scalar"),
    ("test_row", "+src_websocket_test"),
    ("missing_field", "no_timestamp"),
    ("bad_symbol", "sym_5930"),
    ("bad_timestamp", "ts_minute61"),
    ("bad_price", "price_zero"),
    ("bad_volume", "acc_negative"),
    ("invalid_json", "+empty"),
    ("not_an_object", "+obj1"),
    ("bad_field_type", "volume_list"),
    ("test_row", "+sess_docker_test_session"),
    ("missing_field", "no_symbol"),
    ("bad_symbol", "sym_00593O0"),
    ("bad_timestamp", "exec_256199"),
    ("bad_price", "price_negative"),
    ("bad_volume", "acc_fraction"),
    ("invalid_json", "utf8"),
    ("not_an_object", "+obj2"),
    ("test_row", "+sess_test_session"),
    ("missing_field", "price_null"),
    ("bad_symbol", "sym_abc123"),
    ("bad_timestamp", "exec_colons"),
    ("bad_price", "price_fraction"),
    ("invalid_json", "+garbage1"),
    ("not_an_object", "+obj3"),
    ("test_row", "+sess_quick_test"),
    ("missing_field", "no_accumulated"),
    ("test_row", "exec_iso"),  # only a test harness writes an ISO datetime there (contract section 2)
    ("test_row", "+marker"),
    ("bad_timestamp", "ts_day32"),
    ("test_row", "+sym_TEST01_iso"),
    ("invalid_json", "+garbage2"),
    ("test_row", "+sym_TEST001_mock"),
    ("test_row", "+src_test"),
)

_K2_VARIANTS: tuple[tuple[str, str], ...] = (
    ("bad_price", "close_zero"),
    ("bad_market", "market_path"),  # not in the contract's evidence: a market names a staging directory
    ("invalid_json", "merge"),
    ("missing_field", "close_null"),
    ("test_row", "+sess_docker_volume_test"),
    ("bad_field_type", "price_scalar"),
    ("bad_timestamp", "ts_minute61"),
    ("bad_symbol", "sym_5930"),
    ("not_an_object", "+obj2"),
    ("bad_volume", "volume_negative"),
    ("missing_field", "no_ts"),
    ("test_row", "+src_mock"),
    ("bad_field_type", "volume_list"),
    ("bad_price", "close_fraction"),
    ("missing_field", "volume_null"),
    ("bad_symbol", "sym_abc123"),
    ("invalid_json", "+garbage0"),
    ("bad_volume", "volume_fraction"),
)


def _bad_ts(ts: str, how: str) -> str:
    if how == "minute61":
        return ts[:14] + "61" + ts[16:]
    if how == "day32":
        return ts[:8] + "32" + ts[10:]
    return ts[:11] + "25" + ts[13:]  # hour 25


def _k1_dirt(variant: str, line: str, cur: bool, day: date, sec: int, rng: random.Random) -> tuple[str, bool]:
    """(new text, replaces the trade line?) for one K1 dirt variant; exactly one problem each."""
    pkey = "current" if cur else "close"
    if variant.startswith("+garbage"):
        return _GARBAGE[int(variant[-1])], False
    if variant.startswith("+obj"):
        return _NOT_OBJECT[int(variant[-1])], False
    if variant == "+empty":
        return "", False
    if variant == "utf8":
        i = line.index('"session_id": "') + 15
        return line[:i] + "\udcff\udcfe" + line[i + 2:], True  # undecodable bytes inside a string
    if variant.startswith("+"):
        return _edit(line, lambda d: _k1_test_row(d, variant, day, sec, rng)), False

    def edit(d: dict[str, Any]) -> None:
        if variant == "price_scalar":
            d["price"] = 5
        elif variant == "volume_list":
            d["volume"] = [1]
        elif variant == "no_timestamp":
            del d["timestamp"]
        elif variant == "no_symbol":
            del d["symbol"]
        elif variant == "price_null":
            d["price"][pkey] = None
        elif variant == "no_accumulated":
            del d["volume"]["accumulated"]
        elif variant.startswith("sym_"):
            d["symbol"] = variant[4:]
        elif variant.startswith("ts_"):
            d["timestamp"] = _bad_ts(d["timestamp"], variant[3:])
        elif variant == "exec_iso":
            d["execution_time"] = f"{day.isoformat()}T{_HMS[sec]}"
        elif variant.startswith("exec_"):
            if not cur:  # v0 has no execution_time: break the timestamp instead
                d["timestamp"] = _bad_ts(d["timestamp"], "hour25")
            elif variant == "exec_256199":
                d["execution_time"] = "256199"
            else:  # exec_colons
                d["execution_time"] = f"{_HMS[sec]}"
        elif variant == "price_zero":
            d["price"][pkey] = 0
        elif variant == "price_negative":
            d["price"][pkey] = -d["price"][pkey]
        elif variant == "price_fraction":
            d["price"][pkey] = d["price"][pkey] + 0.5
        elif variant == "acc_negative":  # or 0, "missing upstream" (every other one)
            d["volume"]["accumulated"] = -(sec % 2)
        elif variant == "acc_fraction":
            d["volume"]["accumulated"] = d["volume"]["accumulated"] + 0.5
        else:
            raise ValueError(variant)

    return _edit(line, edit), True


def _k1_test_row(d: dict[str, Any], variant: str, day: date, sec: int, rng: random.Random) -> None:
    """A test harness's row written into a live file: plausible values, one test marker or more."""
    d["volume"]["accumulated"] = rng.randint(100, 9999)
    if variant == "+src_websocket_test":
        d["source"] = "websocket_test"
    elif variant == "+src_test":
        d["source"] = "test"
    elif variant == "+sess_docker_test_session":
        d["session_id"] = "docker_test_session"
    elif variant == "+sess_test_session":
        d["session_id"] = f"test_session_{rng.randint(1, 99)}"
    elif variant == "+sess_quick_test":
        d["session_id"] = "quick_test"
    elif variant == "+marker":
        d["test_marker"] = True
    elif variant == "+sym_TEST01_iso":
        d["symbol"] = "TEST01"
        d["execution_time"] = f"{day.isoformat()}T{_HMS[sec]}"
    elif variant == "+sym_TEST001_mock":
        d["symbol"] = "TEST001"
        d["source"] = "mock"
    else:
        raise ValueError(variant)


def _k2_dirt(variant: str, line: str, rng: random.Random) -> tuple[str, bool]:
    """(new text, replaces the row?) for one K2 dirt variant ("merge" is handled by the caller)."""
    if variant.startswith("+garbage"):
        return _GARBAGE[int(variant[-1])], False
    if variant.startswith("+obj"):
        return _NOT_OBJECT[int(variant[-1])], False

    def edit(d: dict[str, Any]) -> None:
        if variant == "+sess_docker_volume_test":
            d["session"] = "docker_volume_test"
        elif variant == "+src_mock":
            d["source"] = "mock"
        elif variant == "close_zero":
            d["price"]["close"] = 0
        elif variant == "close_fraction":
            d["price"]["close"] = d["price"]["close"] + 0.5
        elif variant == "close_null":
            d["price"]["close"] = None
        elif variant == "no_ts":
            del d["ts"]
        elif variant == "volume_null":
            d["volume"] = None
        elif variant == "price_scalar":
            d["price"] = 5
        elif variant == "volume_list":
            d["volume"] = [1]
        elif variant == "ts_minute61":
            d["ts"] = _bad_ts(d["ts"], "minute61")
        elif variant.startswith("sym_"):
            d["symbol"] = variant[4:]
        elif variant == "market_path":
            d["market"] = "../" + d["market"]
        elif variant == "volume_negative":
            d["volume"] = -d["volume"]
        elif variant == "volume_fraction":
            d["volume"] = d["volume"] + 0.5
        else:
            raise ValueError(variant)

    return _edit(line, edit), not variant.startswith("+")


# --------------------------------------------------------------------------------------------------
# The market


@dataclass(frozen=True)
class _Symbol:
    code: str
    name: str
    base_price: int
    daily_volume: int


def _symbol_pool(n: int, rng: random.Random) -> list[_Symbol]:
    """The first ``n`` known symbols, then made-up 6-digit codes (leading zeros kept)."""
    out = [_Symbol(c, nm, p, v) for c, nm, p, v in _KNOWN_SYMBOLS[:n]]
    used = {s.code for s in out}
    i = 0
    while len(out) < n:
        code = f"{rng.randrange(1000, 999_990):06d}"
        if code in used:
            continue
        used.add(code)
        i += 1
        out.append(_Symbol(code, f"합성종목{i:04d}", _snap(rng.uniform(4000, 300_000)),
                           int(rng.uniform(100_000, 6_000_000))))
    return out


Snap = list[tuple[int, int, int, int, int]]  # per symbol: (open, high, low, close, cumulative volume)


class _Rung:
    """One price level of a symbol's day: tick-grid neighbours (capped at the limits), change rate
    as written, and the two possible best quotes. Cached, because the tick loop visits few levels."""

    __slots__ = ("up", "down", "up_th", "down_th", "cr", "ba_ask", "ba_bid")

    def __init__(self, up: int, down: int, up_th: float, down_th: float, cr: float, ba_ask: str, ba_bid: str) -> None:
        self.up, self.down, self.up_th, self.down_th = up, down, up_th, down_th
        self.cr, self.ba_ask, self.ba_bid = cr, ba_ask, ba_bid


class _Book:
    """One trading day's per-symbol state. Lists (not objects) so the tick loop can bind them to locals.

    Each day starts from a predetermined previous close and walks (with a slight pull) towards a
    predetermined close, which the 15:30 closing auction prints. Days are therefore independent of
    each other (they can be generated in parallel) and still chain: close(D) == previous close(D+1).
    """

    def __init__(self, symbols: list[_Symbol], prev_close: list[int], target: list[int], rng: random.Random) -> None:
        n = len(symbols)
        self.symbols = symbols
        self.pc = list(prev_close)
        self.target = list(target)
        self.upl = [_snap(pc * 1.3) for pc in prev_close]
        self.dnl = [_snap_up(pc * 0.7) for pc in prev_close]
        self.price = [0] * n
        self.acc = [0] * n
        self.tv = [0] * n
        self.vmean = [1.0] * n
        for i, s in enumerate(symbols):  # opening auction at 09:00
            self.price[i] = min(self.upl[i], max(self.dnl[i], _snap(prev_close[i] * (1 + rng.gauss(0, 0.008)))))
            v = max(1, int(s.daily_volume * rng.uniform(0.02, 0.04)))
            self.acc[i] = v
            self.tv[i] = self.price[i] * v
        self.op = list(self.price)
        self.hi = list(self.price)
        self.lo = list(self.price)

    def rung(self, ladder: dict[int, _Rung], s: int, p: int) -> _Rung:
        """Compute and cache the price level ``p`` of symbol ``s``."""
        up, down = p + _tick(p), p - _tick(p - 1)
        tgt = self.target[s]
        pull = 0.03 if p < tgt else -0.03 if p > tgt else 0.0
        r = ladder[p] = _Rung(up if up <= self.upl[s] else p, down if down >= self.dnl[s] else p,
                              0.3 + pull, 0.7 + pull, round((p - self.pc[s]) * 100 / self.pc[s], 2),
                              f'{{"ask_price": {p}, "bid_price": {down}}}', f'{{"ask_price": {up}, "bid_price": {p}}}')
        return r

    def trade(self, ladder: dict[int, _Rung], s: int, rnd: Callable[[], float], vmean: float) -> None:
        """One trade (slow path, for trades the collector does not log); same walk as the tick loop."""
        p = self.price[s]
        rung = ladder.get(p) or self.rung(ladder, s, p)
        r = rnd()
        p = rung.up if r < rung.up_th else rung.down if r > rung.down_th else p
        self.fill(s, p, int(-math.log(1.0 - rnd()) * vmean) + 1)

    def fill(self, s: int, p: int, v: int) -> None:
        self.price[s] = p
        if p > self.hi[s]:
            self.hi[s] = p
        if p < self.lo[s]:
            self.lo[s] = p
        self.acc[s] += v
        self.tv[s] += p * v

    def snapshot(self) -> Snap:
        return list(zip(self.op, self.hi, self.lo, self.price, self.acc))


def _initial_close(symbols: list[_Symbol], rng: random.Random) -> Snap:
    """The session before the first date: a pre-open manual K2 cycle and leading weekends quote it."""
    out: Snap = []
    for s in symbols:
        c = s.base_price
        out.append((_snap(c * rng.uniform(0.985, 1.0)), _snap(c * rng.uniform(1.0, 1.02)),
                    _snap(c * rng.uniform(0.97, 0.99)), c, int(s.daily_volume * rng.uniform(0.8, 1.2))))
    return out


def _close_path(symbols: list[_Symbol], weekdays: list[date], rng: random.Random
                ) -> dict[date, tuple[list[int], list[int]]]:
    """(previous close, close) per trading day: a daily random walk inside the +-30 % limits."""
    prev = [s.base_price for s in symbols]
    out = {}
    for d in weekdays:
        close = [min(_snap(pc * 1.3), max(_snap_up(pc * 0.7), _snap(pc * math.exp(rng.gauss(0, 0.015)))))
                 for pc in prev]
        out[d] = (prev, close)
        prev = close
    return out


# --------------------------------------------------------------------------------------------------
# Plans: which date gets which feature (derived from the date range, so any range works)


def _corrupt_range(d: date) -> tuple[int, int]:
    """The corrupt window as [lo, hi) microseconds of KST day ``d``; (0, 0) when outside."""
    (d0, s0), (d1, s1) = CORRUPT_FROM, CORRUPT_TO
    if d < d0 or d > d1:
        return (0, 0)
    return (s0 * US if d == d0 else 0, s1 * US if d == d1 else DAY)


def _trading_day_is_clean(d: date) -> bool:
    """No corrupt parser window while the market is open."""
    lo, hi = _corrupt_range(d)
    return hi <= OPEN_US or lo >= CLOSE_US


@dataclass
class _ScalpPlan:
    day: date
    cur: bool  # current K1 shape (else v0)
    window: tuple[int, int]
    clean: bool  # no corrupt window during collection: dirt and special features allowed
    dirt: bool
    manual: bool = False
    truncate: bool = False
    utc_ticks: bool = False
    boundary_tick: bool = False
    hour_end_restart: bool = False
    null_optionals: bool = False


@dataclass
class _SwingPlan:
    day: date
    manual_cycle: bool = False
    two_writers: bool = False
    truncate: bool = False


def _plans(dates: list[date], dirt: bool) -> tuple[dict[date, _ScalpPlan], dict[date, _SwingPlan]]:
    """Spread the special features over the range. Without dirt every line loads exactly once: no
    re-sends, no second writer, no manual collector overlap, no truncation, and no ticks at all on
    the days of the corrupt parser window (any line there is rejected, whatever its content)."""
    weekdays = [d for d in dates if d.weekday() < 5 and (dirt or _trading_day_is_clean(d))]
    scalp: dict[date, _ScalpPlan] = {}
    for d in weekdays:
        clean = _trading_day_is_clean(d)
        scalp[d] = _ScalpPlan(d, d > V0_LAST_DAY, _corrupt_range(d), clean, dirt and clean)
    clean_days = [d for d in weekdays if scalp[d].clean]
    last = weekdays[-1] if weekdays else None
    if clean_days:
        first_clean = clean_days[0]
        scalp[first_clean].boundary_tick = True
        scalp[first_clean].hour_end_restart = True
        scalp[clean_days[-1]].utc_ticks = True
        older = [d for d in clean_days if d != last]
        if older and dirt:
            scalp[older[-1]].truncate = True
        manual = [d for d in older if scalp[d].cur]
        if manual and dirt:
            scalp[manual[0]].manual = True
        cur_days = [d for d in clean_days if scalp[d].cur]
        if cur_days:
            scalp[cur_days[0]].null_optionals = True
    swing = {d: _SwingPlan(d) for d in dates}
    swing[dates[0]].manual_cycle = True
    if len(dates) >= 3 and dirt:
        swing[dates[-3]].two_writers = True
    if len(dates) >= 2 and dirt:
        swing[dates[-2]].truncate = True
    return scalp, swing


def _swing_cycles(d: date, rng: random.Random) -> list[int]:
    """Cycle write times: every 10 (later 5) minutes plus fetch time, 09:00-15:30, not clock-aligned."""
    interval = 300 if d >= SWING_5MIN_FROM else 600
    t = OPEN_US + rng.randint(5, 90) * US + rng.randrange(US)
    out = []
    while t <= CLOSE_US:
        out.append(t)
        t += (interval + rng.randint(1, 8)) * US + rng.randrange(US)
    return out


def _estimate_swing_lines(dates: list[date], nsym: int) -> int:
    total = 0
    for d in dates:
        interval = 300 if d >= SWING_5MIN_FROM else 600
        total += (int((CLOSE_US - OPEN_US) / US / (interval + 5)) + 1) * nsym
    return total


MAX_TICKS_PER_HOUR = 35_000  # the contract's 20,000-50,000 lines an hour (section 8); --lines adds days beyond it


def days_for_lines(lines: int, start: date, symbols: int, min_days: int = 8, dirt: bool = True) -> int:
    """The calendar days an archive of ``lines`` lines spans at a real tick density.

    Past the 8 days that hold every feature of the contract (v0 lines, the corrupt window, clean days),
    a bigger archive is a longer one, not a denser one: a real day holds 100k-1M lines, so trade-date
    partitions, and the memory that works on one, keep their real size however long the archive grows.
    """
    days = min_days
    while ticks_per_hour_for_lines(lines, start, days, symbols, dirt) > MAX_TICKS_PER_HOUR:
        days += 1
    return days


def ticks_per_hour_for_lines(lines: int, start: date, days: int, symbols: int, dirt: bool = True) -> int:
    """The ``ticks_per_hour`` that makes the archive about ``lines`` K1/K2 lines long."""
    dates = [start + timedelta(days=i) for i in range(days)]
    weekdays = sum(1 for d in dates if d.weekday() < 5 and (dirt or _trading_day_is_clean(d)))
    if weekdays == 0:
        raise ValueError("no weekday in the date range: scalp ticks only exist on trading days")
    rest = lines - _estimate_swing_lines(dates, symbols)
    return max(1, round(rest / (weekdays * (SCALP_HOURS + 28 / 3600))))


# --------------------------------------------------------------------------------------------------
# The generator


def _chunk_plan(tph: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Collected trades per chunk (09:30-10:00, whole hours to 15:00, then the 28 s of stragglers)."""
    chunks = [(COLLECT_FROM, 10 * HOUR)] + [(h * HOUR, (h + 1) * HOUR) for h in range(10, 15)]
    chunks.append((COLLECT_TO, STRAGGLE_TO))
    counts = [round(tph * (b - a) / HOUR) for a, b in chunks]
    counts[-1] = max(2, counts[-1])
    return chunks, counts


def _dirt_slots(n: int) -> int:
    return max(2, n // 1000)


@dataclass
class _DayJob:
    """Everything one trading day needs: days are simulated independently (in parallel if asked)."""

    root: Path
    plan: _ScalpPlan
    seed: int
    symbols: list[_Symbol]
    tph: int
    dirt: bool
    prev_close: list[int]
    close: list[int]
    cycles: list[int]  # K2 cycle times of the day, to snapshot the book at
    k1_offset: int  # where this day starts in the K1 dirt rotation


@dataclass
class _DayResult:
    ledger: _Ledger
    snaps: list[Snap]
    close: Snap
    gaps: list[dict[str, Any]]


def _scalp_day(job: _DayJob) -> _DayResult:
    """Simulate one day's trades in time order, write its K1 files by receive hour, snapshot for K2."""
    plan, symbols, tph = job.plan, job.symbols, job.tph
    ledger = _Ledger(job.root)
    rng = random.Random(job.seed)
    rnd = rng.random
    nsym = len(symbols)
    codes = [s.code for s in symbols]
    book = _Book(symbols, job.prev_close, job.close, rng)
    d = plan.day
    dp, ymd = d.isoformat() + "T", d.strftime("%Y%m%d")
    snaps: list[Snap] = []
    cyc = iter(job.cycles + [NEVER])
    next_cycle = next(cyc)
    ladders: list[dict[int, _Rung]] = [{} for _ in range(nsym)]

    # Unlogged trades before 09:30 and after 15:00:28 move the book (K2 snapshots, the day's volume)
    # but the collector does not log them.
    n_unlogged = 8 * nsym

    def unlogged(a: int, b: int, share: float) -> None:
        nonlocal next_cycle
        for t in sorted(a + int(rnd() * (b - a)) for _ in range(n_unlogged)):
            while next_cycle <= t:
                snaps.append(book.snapshot())
                next_cycle = next(cyc)
            s = int(rnd() * nsym)
            book.trade(ladders[s], s, rnd, symbols[s].daily_volume * share / 8)

    chunks, counts = _chunk_plan(tph)
    per_sym = max(1.0, sum(counts) / nsym)
    for i, sym in enumerate(symbols):
        book.vmean[i] = sym.daily_volume * 0.72 / per_sym
    seen = np.zeros(sum(counts), dtype=np.uint8)  # by trade id (chunk base + index): the dedup key
    unlogged(OPEN_US, COLLECT_FROM, 0.12)

    # Collector restarts: a new session_id each time; trades during the downtime are lost; the new
    # process re-sends the last few trades (same bytes, new session_id), possibly into the next hour.
    restarts = [rng.randint(10 * HOUR, 12 * HOUR)]
    if plan.hour_end_restart:
        restarts = [10 * HOUR + 59 * 60 * US + 55 * US + rng.randrange(3 * US)]
    if rnd() < 0.5:
        restarts.append(rng.randint(12 * HOUR + 30 * 60 * US, 14 * HOUR + 30 * 60 * US))
    restarts.append(NEVER)
    ri = 0
    next_restart = restarts[0]
    gate = min(next_cycle, next_restart)
    crash_done = False
    sess = _session(rng)
    down_until = 0
    gaps: list[dict[str, Any]] = []

    # Manual CLI collector: two symbols for 40 minutes, overlapping the websocket's trades.
    m_lo, m_hi = (10 * HOUR + 5 * 60 * US, 10 * HOUR + 45 * 60 * US) if plan.manual else (-1, -1)
    m_syms = min(2, nsym)
    manual_recs: list[Rec] = []

    wlo, whi = plan.window
    cur = plan.cur
    upl, dnl, pc = book.upl, book.dnl, book.pc
    price, op, hi, lo, acc, tv, vmean = book.price, book.op, book.hi, book.lo, book.acc, book.tv, book.vmean
    hms, ex = _HMS, _EXEC
    pending: list[Rec] = []
    tail: list[Rec] = []  # the last records already flushed: a restart right after a flush re-sends them
    files_written: list[str] = []
    k1_rot = job.k1_offset

    def restart(r_at: int) -> None:
        nonlocal sess, down_until, crash_done
        new = _session(rng)
        gap = rng.randint(3 * US, 12 * US)
        w = r_at + gap
        suffix = sess + '"}'
        plain = [r for r in tail + pending[-8:] if r[3] >= 0 and r[1].endswith(suffix)]
        copies = plain[-rng.randint(1, 4):] if plain and job.dirt else []
        if plan.dirt and not crash_done and copies:
            # The old process died mid-line; the new one appended its first record to that line.
            crash_done = True
            s = int(rnd() * nsym)
            book.trade(ladders[s], s, rnd, vmean[s])
            t_us = r_at + rng.randint(50_000, 900_000)
            body = _k1_body(cur, _kst_ts(dp, t_us), codes[s], ex[r_at // US], price[s], op[s], hi[s], lo[s],
                            round((price[s] - pc[s]) * 100 / pc[s], 2), acc[s], tv[s], "{}")
            first = copies.pop(0)[1]
            pending.append((w, _cut(body + suffix, rng) + first[: -len(suffix)] + new + '"}', "invalid_json", -1))
            w += rng.randint(200, 2000)
        for _, line, status, tid in copies:
            pending.append((w, line[: -len(suffix)] + new + '"}', status, tid))
            w += rng.randint(200, 3000)
        gaps.append({"track_type": "track_b", "symbol": codes[0], "gap_type": "minor",
                     "gap_duration_seconds": round(gap / US + rng.uniform(0.5, 2.0), 1),
                     "last_update": _kst_ts(dp, r_at - rng.randint(0, 2 * US)),
                     "detected_at": _kst_ts(dp, r_at + gap + rng.randint(0, US)),
                     "expected_interval_seconds": 2})
        sess = new
        down_until = r_at + gap

    def flush(before: int, truncate: bool = False) -> None:
        """Write every pending record received before ``before`` into its hourly file."""
        nonlocal tail
        pending.sort(key=itemgetter(0))
        keys = [r[0] for r in pending]
        cut = bisect_left(keys, before)
        i = 0
        while i < cut:
            h = keys[i] // HOUR
            k = bisect_left(keys, (h + 1) * HOUR, i, cut)
            rel = f"assets/scalp/{ymd}_{h:02d}.jsonl"
            assert rel not in files_written, f"{rel} written twice"
            files_written.append(rel)
            ledger.write_jsonl(rel, "scalp", pending[i:k], seen, (ymd, h), truncate_last=truncate and k == cut)
            i = k
        if cut:
            tail = pending[max(0, cut - 4):cut]
            del pending[:cut]

    base = 0
    for ci, ((c_lo, c_hi), n) in enumerate(zip(chunks, counts)):
        # Bulk draws for the tick loop (numpy, seeded from the day's stream: still deterministic).
        g = np.random.default_rng(rng.getrandbits(64))
        times = np.sort(g.integers(c_lo, c_hi, n)).tolist()
        sym_of = g.integers(0, nsym, n).tolist()
        vol_of = g.exponential(1.0, n).tolist()
        delay_of = g.integers(50_000, 1_000_000, n).tolist()
        special: dict[int, str | int] = {}  # index -> feature, or the K1 dirt variant (rotation index)
        if plan.boundary_tick and ci == 0 and times:
            tb = 10 * HOUR - 400_000  # 09:59:59.6, received 10:00:00.2: lands in the _10 file
            times.pop()  # replaces a trade: the count (and so the trade ids) stays fixed
            times.insert(bisect_left(times, tb), tb)
            special[bisect_left(times, tb)] = "boundary"
        if plan.clean and ci < len(chunks) - 1:
            eligible = [j for j, t in enumerate(times) if t < DIRT_BEFORE and j not in special]
            picks = iter(rng.sample(eligible, min(len(eligible), 12)))
            if plan.dirt:
                slots = _dirt_slots(n)
                for j in sorted(rng.sample(eligible, min(len(eligible), slots))):
                    special[j] = k1_rot
                    k1_rot += 1
                k1_rot += slots - min(len(eligible), slots)  # keep the planned offsets of later days
            if plan.utc_ticks and ci == 3:
                for j in list(picks)[:3]:
                    special.setdefault(j, "utc")
            if plan.null_optionals and ci == 2:
                for kind in ("null_exec", "null_exec", "null_value", "null_value"):
                    j = next(picks, -1)
                    if j >= 0:
                        special.setdefault(j, kind)
        marks = sorted(special) + [-1]
        mi = 0
        next_mark = marks[0]

        for j, t in enumerate(times):
            if t >= gate:
                while next_cycle <= t:
                    snaps.append(book.snapshot())
                    next_cycle = next(cyc)
                while t >= next_restart:
                    restart(next_restart)
                    ri += 1
                    next_restart = restarts[ri]
                gate = min(next_cycle, next_restart)
            kind: str | int | None = None
            if j == next_mark:
                kind = special[j]
                mi += 1
                next_mark = marks[mi]
            s = sym_of[j]
            lad = ladders[s]
            p = price[s]
            rung = lad.get(p) or book.rung(lad, s, p)
            r = rnd()
            if r < rung.up_th:
                if rung.up != p:
                    p = price[s] = rung.up
                    if p > hi[s]:
                        hi[s] = p
                    rung = lad.get(p) or book.rung(lad, s, p)
            elif r > rung.down_th:
                if rung.down != p:
                    p = price[s] = rung.down
                    if p < lo[s]:
                        lo[s] = p
                    rung = lad.get(p) or book.rung(lad, s, p)
            v = int(vol_of[j] * vmean[s]) + 1
            a = acc[s] + v
            acc[s] = a
            tval = tv[s] + p * v
            tv[s] = tval
            if m_lo <= t < m_hi and s < m_syms:
                r = rnd()
                if r < 0.8:  # the manual collector caught it (r >= 0.6: the websocket did not)
                    mt = t + 30_000 + int(rnd() * 600_000)
                    null = job.dirt and len(manual_recs) % 15 == 7
                    manual_recs.append((mt, _manual_line(_kst_ts(dp, mt), codes[s], ex[t // US],
                                                         None if null else p, op[s], hi[s], lo[s], rung.cr, v, a,
                                                         tval, rung.ba_ask),
                                        "missing_field" if null else None, base + j))
                    if r >= 0.6:
                        continue
            if t < down_until:
                continue

            r = rnd()
            ba = rung.ba_ask if r < 0.5 else "{}" if r > 0.98 else rung.ba_bid
            recv = t + delay_of[j]
            if r < 0.01:  # a whole-second receive time, written without a fraction (still after the trade)
                recv = recv // US * US if recv // US * US >= t else (recv // US + 1) * US
            if kind == "boundary":
                recv = t + 600_000
            rs, fr = divmod(recv, US)
            ts = f"{dp}{hms[rs]}.{fr:06d}+09:00" if fr else f"{dp}{hms[rs]}+09:00"
            # Fast paths: these f-strings must equal _k1_corrupt_body/_k1_body (tests check).
            if wlo <= recv < whi:
                sign = 1 if p >= upl[s] else 4 if p <= dnl[s] else 2 if p > pc[s] else 5 if p < pc[s] else 3
                ask, bid = (p, rung.down) if r < 0.5 else (rung.up, p)
                pending.append((recv, f'{{"timestamp": "{ts}", "symbol": "{ex[t // US]}", "execution_time": '
                                      f'"{p}", "price": {{"current": {sign}, "open": {p - pc[s]}, "high": '
                                      f'{op[s]}, "low": {hi[s]}, "change_rate": {rung.cr}}}, "volume": '
                                      f'{{"accumulated": {ask}, "trade_value": {bid}}}, "bid_ask": {{"ask_price": '
                                      f'{v}, "bid_price": {a}}}, "source": "websocket", "session_id": "{sess}"}}',
                                "corrupt_parser_window", base + j))
                continue
            if cur:
                line = (f'{{"timestamp": "{ts}", "symbol": "{codes[s]}", "execution_time": "{ex[t // US]}", '
                        f'"price": {{"current": {p}, "open": {op[s]}, "high": {hi[s]}, "low": {lo[s]}, '
                        f'"change_rate": {rung.cr}}}, "volume": {{"accumulated": {a}, "trade_value": {tval}}}, '
                        f'"bid_ask": {ba}, "source": "websocket", "session_id": "{sess}"}}')
            else:
                line = (f'{{"timestamp": "{ts}", "symbol": "{codes[s]}", "price": {{"close": {p}, "open": '
                        f'{op[s]}, "high": {hi[s]}, "low": {lo[s]}, "change_rate": {rung.cr}}}, "volume": '
                        f'{{"accumulated": {a}}}, "source": "websocket", "session_id": "{sess}"}}')
            if kind is None or kind == "boundary":
                pending.append((recv, line, None, base + j))
            elif isinstance(kind, int):
                reason, variant = _K1_VARIANTS[kind % len(_K1_VARIANTS)]
                text, replaces = _k1_dirt(variant, line, cur, d, t // US, rng)
                if replaces:
                    pending.append((recv, text, reason, -1))
                else:
                    pending.append((recv, line, None, base + j))
                    pending.append((recv + 1, text, reason, -1))
            elif kind == "utc":  # a misconfigured host: UTC offset, same instant
                pending.append((recv, _edit(line, lambda x: x.update(timestamp=_utc_ts(dp, recv - 9 * HOUR))),
                                None, base + j))
            elif kind == "null_exec" and cur:
                pending.append((recv, _edit(line, lambda x: x.update(execution_time=None)), None, base + j))
            elif kind == "null_value" and cur:
                pending.append((recv, _edit(line, lambda x: x["volume"].update(trade_value=None)), None, base + j))
            else:
                pending.append((recv, line, None, base + j))

        base += n
        while next_restart < c_hi:
            restart(next_restart)
            ri += 1
            next_restart = restarts[ri]
        gate = min(next_cycle, next_restart)
        if ci < len(chunks) - 1:
            flush(c_hi)
    flush(NEVER, truncate=plan.truncate)

    unlogged(STRAGGLE_TO, CLOSE_US, 0.13)
    while next_cycle < CLOSE_US:
        snaps.append(book.snapshot())
        next_cycle = next(cyc)
    for s, sym in enumerate(symbols):  # closing auction at 15:30: prints the day's close
        book.fill(s, job.close[s], max(1, int(sym.daily_volume * rng.uniform(0.01, 0.03))))
    while next_cycle < NEVER:
        snaps.append(book.snapshot())
        next_cycle = next(cyc)
    if manual_recs:
        manual_recs.sort(key=itemgetter(0))
        ledger.write_jsonl(f"assets/scalp/{ymd}.jsonl", "scalp", manual_recs, seen, (ymd, -1))
    return _DayResult(ledger, snaps, book.snapshot(), gaps)


class _Generator:
    """Plans the date range, simulates the trading days (in parallel if asked), then writes K2, K3,
    K4 and K5 in date order and finally the growing tails, booking every line as it goes."""

    def __init__(self, root: Path, start: date, days: int, symbols: int, ticks_per_hour: int, seed: int,
                 dirt: bool, growing: bool, workers: int) -> None:
        if days < 1 or symbols < 1 or ticks_per_hour < 1:
            raise ValueError("days, symbols and ticks_per_hour must be >= 1")
        self.root = root
        self.dates = [start + timedelta(days=i) for i in range(days)]
        self.tph = ticks_per_hour
        self.dirt = dirt
        self.growing = growing
        self.workers = workers
        master = random.Random(seed)
        self.symbols = _symbol_pool(symbols, master)
        self.codes = [s.code for s in self.symbols]
        self.nsym = symbols
        self.initial_close = _initial_close(self.symbols, master)
        self.scalp_plans, self.swing_plans = _plans(self.dates, dirt)
        self.closes = _close_path(self.symbols, sorted(self.scalp_plans), master)
        # Each date draws its seeds up front, so that days can be simulated in any order.
        self.seeds = {d: (master.getrandbits(64), master.getrandbits(64)) for d in self.dates}
        self.grow_seed = master.getrandbits(64)
        self.ledger = _Ledger(root)
        self.k2_rot = 0

    def run(self) -> Expected:
        cycles = {d: _swing_cycles(d, random.Random(self.seeds[d][1])) for d in self.dates}
        jobs, k1_offset = [], 0
        _, counts = _chunk_plan(self.tph)
        for d, plan in sorted(self.scalp_plans.items()):
            jobs.append(_DayJob(self.root, plan, self.seeds[d][0], self.symbols, self.tph, self.dirt,
                                *self.closes[d], cycles[d], k1_offset))
            if plan.dirt:
                k1_offset += sum(_dirt_slots(n) for n in counts[:-1])
        results = dict(zip(sorted(self.scalp_plans), self._map(jobs)))
        last_close = self.initial_close
        for d in self.dates:
            rng = random.Random(self.seeds[d][1])
            _swing_cycles(d, rng)  # the same draws as above; the rest of the stream is this date's
            pre_open = last_close
            if d in results:
                res = results[d]
                self.ledger.merge(res.ledger)
                snaps, last_close = res.snaps, res.close
                if res.gaps:
                    self.ledger.write_ledger(f"logs/system/gap_{d:%Y%m%d}.jsonl", res.gaps)
            else:  # weekend/holiday: the last session's closing quotes all day
                snaps = [last_close] * len(cycles[d])
            self._swing_day(self.swing_plans[d], rng, cycles[d], snaps, pre_open)
            self._documents(d, rng)
        if self.growing:
            self._grow(last_close)
        exp = self.ledger.exp
        exp.rejects.sort()
        counts_by_reason = dict.fromkeys(REASONS, 0)
        for _, _, reason in exp.rejects:
            counts_by_reason[reason] += 1
        exp.reject_counts = {r: n for r, n in counts_by_reason.items() if n}
        exp.check()
        return exp

    def _map(self, jobs: list[_DayJob]) -> list[_DayResult]:
        """Simulate trading days, in worker processes when asked; the output does not depend on it."""
        if self.workers <= 1 or len(jobs) <= 1:
            return [_scalp_day(j) for j in jobs]
        ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(max_workers=min(self.workers, len(jobs)), mp_context=ctx) as pool:
            return list(pool.map(_scalp_day, jobs))

    def _grow(self, close: Snap) -> None:
        """Append an incomplete record to the newest scalp and swing files (a writer mid-line)."""
        rng = random.Random(self.grow_seed)
        if "scalp" in self.ledger.newest_rel:
            ymd = Path(self.ledger.newest_rel["scalp"]).name[:8]
            day = date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:]))
            t = STRAGGLE_TO + rng.randrange(US)
            o, h, lo, c, v = close[0]
            line = _k1_body(day > V0_LAST_DAY, _kst_ts(day.isoformat() + "T", t), self.codes[0], _EXEC[t // US], c,
                            o, h, lo, 0.0, v, v * c, "{}")
            self.ledger.append_partial("scalp", _cut(line + _session(rng) + '"}', rng))
        o, h, lo, c, v = close[0]
        line = _swing_line(_swing_ts(self.dates[-1], CLOSE_US + rng.randrange(US)), _session(rng), self.codes[0],
                           o, h, lo, c, v)
        self.ledger.append_partial("swing", _cut(line, rng))

    # ---------------------------------------------------------------- K2, one date

    def _swing_day(self, plan: _SwingPlan, rng: random.Random, cycles: list[int], snaps: list[Snap],
                   pre_open: Snap) -> None:
        """One date's K2 file: each cycle quotes the whole universe at once (one ``ts`` within ms)."""
        d = plan.day
        sess = _session(rng)
        nsym = self.nsym
        all_cycles: list[tuple[int, Snap]] = list(zip(cycles, snaps))
        if plan.manual_cycle:  # a manual run before the open: yesterday's quotes
            all_cycles.insert(0, (7 * HOUR + 29 * 60 * US + rng.randrange(60 * US), pre_open))
        recs: list[Rec] = []
        protected: set[int] = set()
        dup_cycles = set(rng.sample(range(1, len(all_cycles) - 1), min(3, len(all_cycles) - 2))) \
            if plan.two_writers and len(all_cycles) > 2 else set()
        other = _session(rng)
        for ci, (c_us, snap) in enumerate(all_cycles):
            start = len(recs)
            t = c_us
            rows = []
            for i in range(nsym):
                o, h, lo, c, v = snap[i]
                rows.append((t, _swing_line(_swing_ts(d, t), sess, self.codes[i], o, h, lo, c, v), None, ci * nsym + i))
                t += rng.randint(40, 400)
            recs.extend(rows)
            if ci in dup_cycles:  # a second writer appended the same cycle (same ts, other session)
                recs.extend((r[0], r[1].replace(sess, other), None, r[3]) for r in rows)
            if ci in dup_cycles or ci == len(all_cycles) - 1 or (plan.manual_cycle and ci == 0):
                protected.update(range(start, len(recs)))
        if self.dirt:
            eligible = [i for i in range(len(recs) - 1) if i not in protected and i + 1 not in protected]
            picks = sorted(rng.sample(eligible, min(len(eligible), max(1, len(recs) // 1000))), reverse=True)
            for i in picks:
                if i + 1 < len(recs) and recs[i][2] is None and recs[i + 1][2] is None:
                    reason, variant = _K2_VARIANTS[self.k2_rot % len(_K2_VARIANTS)]
                    self.k2_rot += 1
                    if variant == "merge":  # crash mid-line; the next row continues on the same line
                        recs[i:i + 2] = [(recs[i][0], _cut(recs[i][1], rng) + recs[i + 1][1], reason, -1)]
                        continue
                    text, replaces = _k2_dirt(variant, recs[i][1], rng)
                    if replaces:
                        recs[i] = (recs[i][0], text, reason, -1)
                    else:
                        recs.insert(i + 1, (recs[i][0], text, reason, -1))
        ymd = d.strftime("%Y%m%d")
        seen = np.zeros(len(all_cycles) * nsym, dtype=np.uint8)  # by snapshot id: cycle * symbols + symbol
        self.ledger.write_jsonl(f"assets/swing/{ymd}.jsonl", "swing", recs, seen, (ymd,), truncate_last=plan.truncate)

    # ---------------------------------------------------------------- K3, K4, K5

    def _documents(self, d: date, rng: random.Random) -> None:
        """K3 universe (simplified older form on weekends) and K4 symbol master, which the ETL skips."""
        ymd = d.strftime("%Y%m%d")
        syms = sorted(self.codes)
        if d.weekday() >= 5:  # the simplified older form
            doc: dict[str, Any] = {"metadata": {"date": ymd, "count": len(syms)}, "symbols": syms}
        else:
            gen = datetime.combine(d, time(17, 5)) + timedelta(microseconds=rng.randrange(60 * US))
            doc = {"metadata": {"date": d.isoformat(), "market": "kr_stocks",
                                "filter_criteria": {"min_price": 4000, "prev_trading_day": d.isoformat()},
                                "generated_at": gen.isoformat(), "count": len(syms)},
                   "symbols": syms}
        self.ledger.write_doc(f"universe/{ymd}_kr_stocks.json", doc, "universe")
        self.ledger.exp.universe[d.isoformat()] = syms
        master = [{"symbol": s.code, "name": s.name} for s in self.symbols]
        self.ledger.write_doc(f"symbols/{ymd}_kr_stocks.json", {
            "metadata": {"date": ymd, "source_strategy": "kis_master_file", "count": len(master)},
            "symbols": master}, "skipped")
        if d == self.dates[0]:
            self.ledger.write_doc(f"symbols/symbols_{ymd}_AM.json", {
                "metadata": {"date": ymd, "source_strategy": "kis_master_file", "version": "AM",
                             "count": len(master)}, "symbols": master}, "skipped")


def _prepare_root(root: Path, overwrite: bool) -> None:
    """Refuse to mix with an existing tree; ``overwrite`` only removes what looks like an archive."""
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{root} is not empty (use overwrite=True / --force)")
        unknown = {p.name for p in root.iterdir()} - {"assets", "universe", "symbols", "logs"}
        if unknown:
            raise FileExistsError(f"{root} holds more than an archive ({sorted(unknown)}); not removing it")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)


def generate_archive(
    root: Path,
    *,
    start: date = date(2026, 1, 22),
    days: int = 8,
    symbols: int = 6,
    ticks_per_hour: int = 200,
    seed: int = 7,
    dirt: bool = True,
    growing: bool = True,
    overwrite: bool = False,
    workers: int | None = None,
) -> Expected:
    """Write an archive under ``root`` and return (and save next to it) what an ETL must report.

    ``ticks_per_hour`` is the websocket tick rate over all symbols during collection (09:30-15:00);
    ``growing`` leaves the newest scalp and swing files with an incomplete last line. ``workers``
    simulates trading days in that many processes (default: all cores for big archives); the bytes
    written do not depend on it.
    """
    root = Path(root)
    if workers is None:
        big = ticks_per_hour * SCALP_HOURS * days > 200_000
        workers = (os.cpu_count() or 1) if big else 1
    _prepare_root(root, overwrite)
    exp = _Generator(root, start, days, symbols, ticks_per_hour, seed, dirt, growing, workers).run()
    expected_path(root).write_text(exp.to_json(), encoding="utf-8")
    return exp


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="archive root to create")
    ap.add_argument("--start", type=date.fromisoformat, default=date(2026, 1, 22))
    ap.add_argument("--days", type=int, help="calendar days (default 8; with --lines, as many as keep the tick rate "
                    f"at most {MAX_TICKS_PER_HOUR:,} an hour)")
    ap.add_argument("--symbols", type=int, default=6)
    ap.add_argument("--ticks-per-hour", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-dirt", action="store_true")
    ap.add_argument("--no-growing", action="store_true", help="end every file with a complete line")
    ap.add_argument("--lines", type=int, help="pick --ticks-per-hour so the archive has about N lines")
    ap.add_argument("--force", action="store_true", help="replace an existing archive at --out")
    ap.add_argument("--workers", type=int, help="processes simulating trading days (default: auto)")
    args = ap.parse_args(argv)
    for flag in ("days", "symbols", "ticks_per_hour", "lines", "workers"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            ap.error(f"--{flag.replace('_', '-')} must be at least 1")
    tph = args.ticks_per_hour
    if args.days is None:
        args.days = 8 if args.lines is None else days_for_lines(args.lines, args.start, args.symbols, dirt=not args.no_dirt)
    if args.lines is not None:
        try:
            tph = ticks_per_hour_for_lines(args.lines, args.start, args.days, args.symbols, not args.no_dirt)
        except ValueError as exc:  # --days over a weekend only
            ap.error(str(exc))
    t0 = _time.perf_counter()
    try:
        exp = generate_archive(args.out, start=args.start, days=args.days, symbols=args.symbols, ticks_per_hour=tph,
                               seed=args.seed, dirt=not args.no_dirt, growing=not args.no_growing,
                               overwrite=args.force, workers=args.workers)
    except FileExistsError as exc:
        ap.exit(2, f"{ap.prog}: error: {exc}\n")
    except OSError as exc:  # an --out that cannot be written
        ap.exit(2, f"{ap.prog}: error: cannot generate {args.out}: {exc.strerror or exc}\n")
    dt = _time.perf_counter() - t0
    print(f"{args.out}: {exp.lines_total} lines ({exp.scalp_ticks} ticks, {exp.swing_snapshots} snapshots, "
          f"{len(exp.rejects)} rejects, {exp.duplicates['scalp'] + exp.duplicates['swing']} duplicates, "
          f"{exp.held_back} held back), ticks_per_hour={tph}, {dt:.1f} s ({exp.lines_total / dt:,.0f} lines/s); "
          f"expected outcome: {expected_path(args.out)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
