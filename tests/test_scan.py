"""The decoder on its own: every line decoded or rejected, whichever path finds the bad ones."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import patch

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import scan
from tests.support import tick, write_lines


def decode_file(path: Path, root: Path) -> scan.Decoded:
    files, _ = scan.discover(root)
    (f,) = [f for f in files if f.path == path]
    return scan.decode(scan.read_new_bytes(f, 0, 1, is_newest=True))


def test_bad_lines_the_guess_misses_are_found_by_bisection(tmp_path: Path) -> None:
    """NaN passes every byte check and the object guess; read_ndjson refuses it, so bisection must."""
    lines = [tick(acc=i, execution_time=f"13{i % 60:02d}00") for i in range(40_000)]
    lines[123] = lines[123].replace('"change_rate": 1.54', '"change_rate": NaN')
    lines[39_000] = lines[39_000].replace('"price": {', '"price": 5, "x": {')  # found by the guess
    lines[20_000] = lines[20_000].replace('"change_rate": 1.54', '"change_rate": 1e400')
    path = write_lines(tmp_path / "a/assets/scalp/20260130_13.jsonl", lines)
    dec = decode_file(path, tmp_path / "a")
    # NaN is not JSON; 1e400 is JSON but no float holds it: a field the schema cannot take
    assert dec.rejects.rows() == [(123, "invalid_json"), (20_000, "bad_field_type"), (39_000, "bad_field_type")]
    assert dec.rows.height == 40_000 - 3
    assert dec.rows["line_idx"].to_list() == [i for i in range(40_000) if i not in (123, 20_000, 39_000)]
    assert dec.rows["volume"].struct.field("accumulated").to_list()[:3] == [0.0, 1.0, 2.0]


def test_clean_and_odd_lines_keep_their_numbers(tmp_path: Path) -> None:
    glued = tick(acc=2)[:30] + tick(acc=3)
    lines = [tick(acc=1), "", glued, "[1]", tick(acc=4), "\udcff".encode("utf-8", "surrogateescape").decode("latin-1")]
    path = tmp_path / "a/assets/scalp/20260130_13.jsonl"
    path.parent.mkdir(parents=True)
    body = "\n".join(lines[:-1]).encode() + b"\n" + tick(acc=5).encode().replace(b"websocket", b"\xff\xfeweb") + b"\n"
    path.write_bytes(body)
    dec = decode_file(path, tmp_path / "a")
    assert dec.rejects.rows() == [(1, "invalid_json"), (2, "invalid_json"), (3, "not_an_object"), (5, "invalid_json")]
    assert dec.rows["line_idx"].to_list() == [0, 4]


PATTERNS = [b": ", b'"price": ', b'"bid_ask": ', b'"volume": ', b"{", b'"a_very_long_key_name": ']


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_pattern_match_through_the_word_view_equals_bytewise(data) -> None:  # type: ignore[no-untyped-def]
    """The decode guess compares 8 bytes at a time through an overlapping view; it must equal a byte compare.

    Buffers are made of the pattern, pieces of it with one byte changed, and its own bytes, so that
    near misses at every position of the pattern are common.
    """
    pattern = data.draw(st.sampled_from(PATTERNS))
    near = [pattern[:i] + b"#" + pattern[i + 1 :] for i in range(len(pattern))]
    pieces = st.sampled_from([pattern, *near, *(bytes([b]) for b in pattern)])
    buf = b"".join(data.draw(st.lists(pieces, max_size=12)))
    arr = np.frombuffer(buf, dtype=np.uint8)
    at = np.array(
        sorted(data.draw(st.sets(st.integers(len(pattern), len(buf))))) if len(buf) >= len(pattern) else [],
        dtype=np.int64,
    )
    want = [buf[i - len(pattern) : i] == pattern for i in at.tolist()]
    assert scan._preceded_by(arr, at, pattern).tolist() == want


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_eight_bytes_before_an_offset_equal_a_slice(data) -> None:  # type: ignore[no-untyped-def]
    """The gathered window equals the slice before each offset, zero-padded before the buffer's start
    (short buffers and offsets in the first 8 bytes included)."""
    buf = data.draw(st.binary(max_size=40))
    at = np.array(sorted(data.draw(st.sets(st.integers(0, len(buf))))), dtype=np.int64)
    want = [int.from_bytes(buf[max(0, i - 8) : i].rjust(8, b"\0"), "little") for i in at.tolist()]
    assert scan._eight_before(np.frombuffer(buf, dtype=np.uint8), at).tolist() == want


@settings(max_examples=300, deadline=None)
@given(buf=st.binary(max_size=64), value=st.integers(0, 255), block=st.integers(1, 9))
def test_byte_positions_equal_a_compare_over_the_whole_buffer(buf: bytes, value: int, block: int) -> None:
    """Scanned block by block (blocks of 1-9 bytes here, so that hits fall on every boundary)."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    with patch.object(scan, "_SCAN_BLOCK", block):
        assert scan.byte_positions(arr, value).tolist() == np.flatnonzero(arr == value).tolist()
        assert scan.byte_positions(arr, value, np.greater_equal).tolist() == np.flatnonzero(arr >= value).tolist()


def test_the_guess_suspects_bytes_that_never_occur_in_utf8_and_only_those() -> None:
    """0xC0, 0xC1 and 0xF5-0xFF make a line a suspect; Hangul and 4-byte characters do not."""
    inserts = [b"", "\ud55c\uae00".encode(), b"\xc0\xaf", b"\xc1", b"\xf5", b"\xff", "\U0001f600".encode(), b"\xc2\xa0"]
    lines = [tick(acc=i).encode().replace(b"websocket", b"web" + x) for i, x in enumerate(inserts)]
    data = b"\n".join(lines) + b"\n"
    ends = scan.byte_positions(np.frombuffer(data, dtype=np.uint8), 10)
    assert scan._likely_bad(data, ends, ("price", "volume")).tolist() == [False, False, True, True, True, True, False, False]


def test_raw_lines_cut_by_arrow_equal_python_decoding() -> None:
    """Rejects' raw lines: invalid UTF-8 replaced, CRs kept, long lines capped at RAW_LINE_CAP characters."""
    lines = [
        b'{"a": 1}',
        b"\xff\xfe not utf-8",
        "한글".encode() * 3000,  # capped in bytes first: the cut may split a character
        b"x" * 9000,
        b"",
        b"crlf\r",
        b'{"b": "\xc3"}',
    ] * 2000
    data = b"\n".join(lines) + b"\n"
    ends = scan.byte_positions(np.frombuffer(data, dtype=np.uint8), 10)
    rng = scan.ByteRange(None, 0, len(data), 1, data, ends, b"", False)  # type: ignore[arg-type]
    idx = np.arange(0, len(lines), 3)
    cap = scan.RAW_LINE_CAP
    assert rng.raw_lines(idx).to_list() == [lines[i][: cap * 4].decode("utf-8", "replace")[:cap] for i in idx]


LINE_KINDS = [
    lambda i: tick(acc=i),  # clean
    lambda i: tick(acc=i, source="web{socket"),  # a brace inside a string: the guess suspects it, it decodes
    lambda i: tick(acc=i, session="{x}"),  # the same, at the end of the line
    lambda i: tick(acc=i)[:40],  # truncated in the middle
    lambda i: tick(acc=i)[:30] + tick(acc=i + 1),  # two records run together
    lambda i: tick(acc=i).replace('"price": {', '"price": 5, "x": {'),  # a struct field that is not one
    lambda i: "",  # empty
    lambda i: "[1, 2]",  # JSON, not an object
    lambda i: tick(acc=i).replace('"change_rate": 1.54', '"change_rate": NaN'),  # passes the guess, not JSON
]


@settings(max_examples=60, deadline=None)
@given(kinds=st.lists(st.integers(0, len(LINE_KINDS) - 1), min_size=1, max_size=60))
def test_decode_equals_reading_each_line_on_its_own(tmp_path_factory, kinds) -> None:  # type: ignore[no-untyped-def]
    """Whatever mix of clean, suspect and bad lines: a line decodes, with its number, iff it does alone."""
    root = tmp_path_factory.mktemp("mix")
    lines = [LINE_KINDS[k](i) for i, k in enumerate(kinds)]
    path = write_lines(root / "a/assets/scalp/20260130_13.jsonl", lines)
    dec = decode_file(path, root / "a")
    alone = [scan._read(line.encode() + b"\n", scan.RECORD_SCHEMAS[scan.Kind.SCALP], i, 1) for i, line in enumerate(lines)]
    assert dec.rows["line_idx"].to_list() == [i for i, df in enumerate(alone) if df is not None]
    assert dec.rejects["line_idx"].to_list() == [i for i, df in enumerate(alone) if df is None]
    decoded = [df for df in alone if df is not None]
    if decoded:
        assert dec.rows.equals(pl.concat(decoded).select(dec.rows.columns))
