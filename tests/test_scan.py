"""The decoder on its own: every line decoded or rejected, whichever path finds the bad ones."""

from __future__ import annotations

from pathlib import Path

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
