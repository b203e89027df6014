"""Extract: find archive files, read only their new bytes, and decode every line or reject it.

Files are recognised by folder and name pattern (contract section 1), then by content where names are
ambiguous (universe vs symbol master). Decoding takes a fast path (one ``read_ndjson`` over the byte
range with an explicit schema); a range with any bad line falls back to bisection with
``str.json_decode`` so that only the bad lines are examined one by one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from schemas.records import RECORD_SCHEMAS, Kind

RAW_LINE_CAP = 2000
FINGERPRINT_BYTES = 4096
_FALLBACK_CHUNK = 8192

_SCALP_HOURLY = re.compile(r"^(\d{8})_(\d{2})\.jsonl$")
_DAILY_JSONL = re.compile(r"^(\d{8})\.jsonl$")
_UNIVERSE = re.compile(r"^(\d{8})_kr_stocks\.json$")
_SYMBOLS = re.compile(r"^(?:(\d{8})_kr_stocks|symbols_(\d{8})_(?:AM|PM))\.json$")
_LEDGER = re.compile(r"^(?:gap|overflow)_(\d{8})\.jsonl$")


@dataclass(frozen=True)
class ArchiveFile:
    """One file of the archive, as found on disk now."""

    path: Path
    rel: str  # path relative to the source root, with '/': the file's identity everywhere
    kind: Kind
    series: str  # files of one series are written one after another; the newest may be growing
    file_date: date
    sort_key: str
    size: int
    mtime_ns: int


def _to_date(digits: str) -> date | None:
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def classify(path: Path, root: Path) -> tuple[Kind, str, date, str] | None:
    """(kind, series, file date, sort key) for an archive file, or None if it is not one of ours."""
    name, parent = path.name, path.parent.name
    rel_parts = path.relative_to(root).parts
    if parent == "scalp" and (m := _SCALP_HOURLY.match(name)):
        d = _to_date(m.group(1))
        return (Kind.SCALP, "scalp/hourly", d, f"{m.group(1)}_{m.group(2)}") if d else None
    if parent == "scalp" and (m := _DAILY_JSONL.match(name)):
        d = _to_date(m.group(1))
        return (Kind.SCALP, "scalp/daily", d, m.group(1)) if d else None
    if parent == "swing" and (m := _DAILY_JSONL.match(name)):
        d = _to_date(m.group(1))
        return (Kind.SWING, "swing/daily", d, m.group(1)) if d else None
    if parent == "universe" and (m := _UNIVERSE.match(name)):
        d = _to_date(m.group(1))
        if d is None:
            return None
        # Same name pattern as the symbol master: tell them apart by content (contract section 4).
        kind = Kind.SYMBOLS if _looks_like_symbol_master(path) else Kind.UNIVERSE
        return (kind, kind.value, d, m.group(1))
    if parent == "symbols" and (m := _SYMBOLS.match(name)):
        d = _to_date(m.group(1) or m.group(2))
        return (Kind.SYMBOLS, "symbols", d, name) if d else None
    if "logs" in rel_parts and (m := _LEDGER.match(name)):
        d = _to_date(m.group(1))
        return (Kind.LEDGER, "ledger", d, name) if d else None
    return None


def _looks_like_symbol_master(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(FINGERPRINT_BYTES)
    except OSError:
        return False
    return b'"source_strategy"' in head


def discover(root: Path) -> tuple[list[ArchiveFile], list[str]]:
    """All recognised archive files under ``root`` (recursively), and the paths not recognised."""
    found: list[ArchiveFile] = []
    unknown: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            path = Path(dirpath) / fname
            rel = path.relative_to(root).as_posix()
            info = classify(path, root)
            if info is None:
                unknown.append(rel)
                continue
            st = path.stat()
            kind, series, fdate, sort_key = info
            found.append(ArchiveFile(path, rel, kind, series, fdate, sort_key, st.st_size, st.st_mtime_ns))
    return found, unknown


def newest_of_series(files: list[ArchiveFile]) -> set[str]:
    """Rel paths of the newest file of each series: the only ones whose writer may still be appending."""
    newest: dict[str, ArchiveFile] = {}
    for f in files:
        cur = newest.get(f.series)
        if cur is None or (f.sort_key, f.rel) > (cur.sort_key, cur.rel):
            newest[f.series] = f
    return {f.rel for f in newest.values()}


def fingerprint(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def head_fingerprint(path: Path, length: int) -> str:
    with path.open("rb") as fh:
        return fingerprint(fh.read(length))


@dataclass
class ByteRange:
    """New complete lines of one file: bytes [start, end) hold lines first_line .. first_line+n-1."""

    file: ArchiveFile
    start: int
    end: int
    first_line: int
    data: bytes
    line_ends: np.ndarray  # offsets (within data) of each line's '\n'
    tail: bytes  # bytes after the last newline: an incomplete last line
    tail_is_truncated: bool  # the file's writer moved on, so the tail will never complete

    @property
    def n_lines(self) -> int:
        return int(self.line_ends.shape[0])

    def raw_lines(self, idx: np.ndarray) -> list[str]:
        """The text of the given 0-based line indexes (only ever called for rejects)."""
        starts = np.concatenate(([0], self.line_ends[:-1] + 1))
        out = []
        for i in idx.tolist():
            raw = self.data[starts[i] : self.line_ends[i]]
            out.append(raw[: RAW_LINE_CAP * 4].decode("utf-8", "replace")[:RAW_LINE_CAP])
        return out


def read_new_bytes(file: ArchiveFile, start: int, first_line: int, is_newest: bool) -> ByteRange:
    """Read from ``start`` to the end of the file as it is now, split at the last newline."""
    with file.path.open("rb") as fh:
        fh.seek(start)
        blob = fh.read()
    last_nl = blob.rfind(b"\n")
    data, tail = blob[: last_nl + 1], blob[last_nl + 1 :]
    arr = np.frombuffer(data, dtype=np.uint8)
    line_ends = np.flatnonzero(arr == 10)
    return ByteRange(file, start, start + len(data), first_line, data, line_ends, tail, bool(tail) and not is_newest)


@dataclass
class Decoded:
    """Decoded records of a byte range: ``rows`` has ``line_idx`` plus the record's top-level fields."""

    rows: pl.DataFrame
    rejects: pl.DataFrame  # line_idx (0-based within the range), reason


_REJECT_SCHEMA = pl.Schema({"line_idx": pl.Int64(), "reason": pl.String()})


def _classify_bad_line(raw: bytes) -> str:
    """Why one line did not decode: the only per-line Python, and only for lines that failed."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "invalid_json"
    return "bad_field_type" if isinstance(obj, dict) else "not_an_object"


def decode(rng: ByteRange) -> Decoded:
    """Decode every complete line of ``rng`` against its kind's explicit schema."""
    schema = RECORD_SCHEMAS[rng.file.kind]
    n = rng.n_lines
    empty_reject = pl.DataFrame(schema=_REJECT_SCHEMA)
    if n == 0:
        return Decoded(pl.DataFrame(schema={"line_idx": pl.Int64(), **schema}), empty_reject)
    lengths = np.diff(np.concatenate(([-1], rng.line_ends))) - 1
    if not (lengths == 0).any():  # read_ndjson skips empty lines, so only then do rows align with lines
        try:
            rows = pl.read_ndjson(io.BytesIO(rng.data), schema=schema, row_index_name="line_idx")
            if rows.height == n:
                return Decoded(rows.with_columns(pl.col("line_idx").cast(pl.Int64)), empty_reject)
        except Exception:  # noqa: BLE001 - any failure means: find the bad lines the slow way
            pass
    return _decode_slow(rng, schema)


def _decode_slow(rng: ByteRange, schema: pl.Schema) -> Decoded:
    """Bisect failing chunks down to single lines; only those are classified in Python."""
    lines = rng.data.split(b"\n")[: rng.n_lines]
    series = pl.Series("raw", lines, dtype=pl.Binary)
    struct = pl.Struct(schema)
    good: list[pl.DataFrame] = []
    bad_idx: list[int] = []
    bad_reason: list[str] = []

    def reject(i: int) -> None:
        bad_idx.append(i)
        bad_reason.append(_classify_bad_line(lines[i]))

    def attempt(lo: int, hi: int) -> None:
        part = series.slice(lo, hi - lo)
        try:
            text = part.cast(pl.String)
            # json_decode turns a bare `null` line into an all-null struct: only objects may pass.
            if not text.str.strip_chars_start().str.starts_with("{").all():
                raise ValueError("not an object")
            decoded = text.str.json_decode(struct)
            if decoded.len() != hi - lo:
                raise ValueError("row count mismatch")
            good.append(
                decoded.struct.unnest().with_columns(line_idx=pl.int_range(lo, hi, dtype=pl.Int64))
            )
        except Exception:  # noqa: BLE001 - bisect until the bad line is alone
            if hi - lo == 1:
                reject(lo)
                return
            mid = (lo + hi) // 2
            attempt(lo, mid)
            attempt(mid, hi)

    for lo in range(0, len(lines), _FALLBACK_CHUNK):
        attempt(lo, min(lo + _FALLBACK_CHUNK, len(lines)))
    cols = ["line_idx", *schema.names()]
    empty = pl.DataFrame(schema={"line_idx": pl.Int64(), **schema})
    rows = pl.concat([g.select(cols) for g in good]) if good else empty
    rejects = pl.DataFrame({"line_idx": bad_idx, "reason": bad_reason}, schema=_REJECT_SCHEMA).sort("line_idx")
    return Decoded(rows, rejects)


def read_document(file: ArchiveFile) -> tuple[bytes, str]:
    """A whole-document file (universe): its bytes and content fingerprint."""
    data = file.path.read_bytes()
    return data, fingerprint(data)
