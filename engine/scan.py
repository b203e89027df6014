"""Extract: find archive files, read only their new bytes, and decode every line or reject it.

Files are recognised by folder and name pattern (contract section 1), then by content where names are
ambiguous (universe vs symbol master). Decoding takes a fast path (one ``read_ndjson`` over the byte
range with an explicit schema); a range with any bad line falls back to bisection with
``str.json_decode`` so that only the bad lines are examined one by one.

NumPy and pyarrow are imported by the functions that read and decode bytes, not with the module:
finding the files, which a run with nothing new does, needs neither (~0.25 s of its start).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from schemas.records import RECORD_SCHEMAS, REQUIRED_OBJECTS, Kind

if TYPE_CHECKING:
    import numpy as np

RAW_LINE_CAP = 2000
# A range is decoded in one call (~790k lines/s on 2 cores); only if that fails (a bad line the guess
# missed) is it re-read in chunks (16384 lines: ~680k lines/s), and a failing chunk is split _FAN_OUT
# ways until the bad lines stand alone.
_CHUNK_LINES = 16384
_FAN_OUT = 16
FINGERPRINT_BYTES = 4096

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


def date_from_digits(digits: str) -> date | None:
    """``YYYYMMDD`` (or ``YYYY-MM-DD``) in ASCII digits as a date, or None (``2026-0-130`` and full-width
    digits are no date, though ``str.isdigit`` and ``int`` take them)."""
    if not re.fullmatch(r"\d{8}|\d{4}-\d{2}-\d{2}", digits, re.ASCII):
        return None
    digits = digits.replace("-", "")
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def classify(path: Path, rel_parts: tuple[str, ...]) -> tuple[Kind, str, date, str] | None:
    """(kind, series, file date, sort key) for an archive file (its path relative to the archive root in
    ``rel_parts``), or None if it is not one of ours."""
    name = rel_parts[-1]
    parent = rel_parts[-2] if len(rel_parts) > 1 else ""
    if parent == "scalp" and (m := _SCALP_HOURLY.match(name)):
        d = date_from_digits(m.group(1))
        return (Kind.SCALP, "scalp/hourly", d, f"{m.group(1)}_{m.group(2)}") if d else None
    if parent == "scalp" and (m := _DAILY_JSONL.match(name)):
        d = date_from_digits(m.group(1))
        return (Kind.SCALP, "scalp/daily", d, m.group(1)) if d else None
    if parent == "swing" and (m := _DAILY_JSONL.match(name)):
        d = date_from_digits(m.group(1))
        return (Kind.SWING, "swing/daily", d, m.group(1)) if d else None
    if parent == "universe" and (m := _UNIVERSE.match(name)):
        d = date_from_digits(m.group(1))
        if d is None:
            return None
        # Same name pattern as the symbol master: tell them apart by content (contract section 4).
        kind = Kind.SYMBOLS if _looks_like_symbol_master(path) else Kind.UNIVERSE
        return (kind, kind.value, d, m.group(1))
    if parent == "symbols" and (m := _SYMBOLS.match(name)):
        d = date_from_digits(m.group(1) or m.group(2))
        return (Kind.SYMBOLS, "symbols", d, name) if d else None
    if "logs" in rel_parts and (m := _LEDGER.match(name)):
        d = date_from_digits(m.group(1))
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
    """All recognised archive files under ``root`` (recursively), and the paths not recognised.

    Plain strings until a file is known to be ours: a run with nothing new does little else, and a
    year's archive has thousands of files (pathlib's parsing was 0.1 s of it at 3,000).
    """
    found: list[ArchiveFile] = []
    unknown: list[str] = []
    walked: set[str] = set()
    # Symlinked folders are followed (``assets/scalp`` linked to another disk is an archive folder like
    # any other); a folder reached twice (a loop, or two links to one place) is read once.
    for dirpath, dirnames, filenames in os.walk(root, onerror=_unreadable, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in walked:
            dirnames[:] = []
            continue
        walked.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = os.path.relpath(dirpath, root)
        dir_parts = () if rel_dir == "." else tuple(Path(rel_dir).parts)
        base = Path(dirpath)
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            rel_parts = (*dir_parts, fname)
            rel = "/".join(rel_parts)
            path = base / fname
            info = classify(path, rel_parts)
            if info is None:
                unknown.append(rel)
                continue
            if not is_utf8(rel):  # every table stores the path as text: such a name cannot be recorded
                raise OSError(errno.EILSEQ, "the file's name is not valid UTF-8; rename it", str(path))
            st = os.stat(os.path.join(dirpath, fname))
            kind, series, fdate, sort_key = info
            found.append(ArchiveFile(path, rel, kind, series, fdate, sort_key, st.st_size, st.st_mtime_ns))
    return found, unknown


def is_utf8(path_text: str) -> bool:
    """Whether a path, as Python decodes file names (undecodable bytes as surrogates), is valid UTF-8."""
    try:
        path_text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unreadable(exc: OSError) -> None:
    """A folder of the archive that cannot be listed stops the run: skipped, its files would be missing
    from the database with the run reported as a success."""
    raise exc


def newest_of_series(files: list[ArchiveFile]) -> set[str]:
    """Rel paths of the files whose writer may still be appending: the newest of each series, unless a
    file of the same kind is dated later. A manual collector's daily scalp file gets no successor in its
    own series once the hourly files go on; without that rule its cut last line would be held back on
    every run, and never rejected. (Were a file taken as finished too early, the line its writer
    finishes later is read again whole: see the manifest's ``tail_read``.)"""
    newest: dict[str, ArchiveFile] = {}
    latest: dict[Kind, date] = {}
    for f in files:
        cur = newest.get(f.series)
        if cur is None or (f.sort_key, f.rel) > (cur.sort_key, cur.rel):
            newest[f.series] = f
        if f.kind not in latest or f.file_date > latest[f.kind]:
            latest[f.kind] = f.file_date
    return {f.rel for f in newest.values() if f.file_date >= latest[f.kind]}


_SCAN_BLOCK = 1 << 24


def byte_positions(arr: np.ndarray, value: int, compare: np.ufunc | None = None) -> np.ndarray:
    """Offsets of the bytes where ``compare(byte, value)`` holds (equal, by default), in 16 MiB blocks.

    One comparison over a whole 400 MB range allocates a 400 MB temporary and takes ~7x longer.
    """
    import numpy as np

    compare = compare or np.equal
    out = []
    hit_buf = np.empty(min(arr.shape[0], _SCAN_BLOCK), dtype=bool)  # reused: fresh pages cost a kernel zeroing
    for off in range(0, arr.shape[0], _SCAN_BLOCK):
        block = arr[off : off + _SCAN_BLOCK]
        hit = hit_buf[: block.shape[0]]
        compare(block, value, out=hit)
        out.append(np.flatnonzero(hit) + off)
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def fingerprint(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def fingerprint_at(path: Path, offset: int, length: int) -> str:
    """The fingerprint of ``length`` bytes of a file from ``offset`` (its head, or the bytes before where
    the last run stopped reading)."""
    with path.open("rb") as fh:
        fh.seek(offset)
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
    tail_is_truncated: bool  # the file's writer moved on: the tail is line first_line+n, rejected

    @property
    def n_lines(self) -> int:
        return int(self.line_ends.shape[0])

    @property
    def size(self) -> int:
        """The file's size when it was read: its complete lines and the tail."""
        return self.end + len(self.tail)

    def fingerprint_of(self, offset: int, length: int) -> str:
        """The fingerprint of the file's bytes [offset, offset+length): from the buffer where it holds
        them, else read from the file."""
        lo = offset - self.start
        if lo >= 0 and offset + length <= self.end:
            return fingerprint(self.data[lo : lo + length])
        return fingerprint_at(self.file.path, offset, length)

    def raw_lines(self, idx: np.ndarray) -> pl.Series:
        """The text of the given 0-based line indexes (rejects only), cut out of the buffer by Arrow.

        Lines are capped at RAW_LINE_CAP characters; a line that is not valid UTF-8 (or whose byte cap
        split a character) is decoded with replacement characters, in Python, in its chunk of 4096.
        """
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        offsets = np.concatenate(([0], self.line_ends + 1)).astype(np.int64)
        whole = pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), self.n_lines, [None, pa.py_buffer(offsets), pa.py_buffer(self.data)]
        )
        taken = pc.binary_slice(pc.binary_slice(whole.take(pa.array(idx, pa.int64())), 0, -1), 0, RAW_LINE_CAP * 4)
        raw = pl.Series(values=taken, dtype=pl.Binary)
        out = [pl.Series(dtype=pl.String)]
        for lo in range(0, raw.len(), 4096):
            chunk = raw.slice(lo, 4096)
            try:
                out.append(chunk.cast(pl.String))
            except pl.exceptions.ComputeError:
                out.append(pl.Series([b.decode("utf-8", "replace") for b in chunk.to_list()], dtype=pl.String))
        return pl.concat(out).str.slice(0, RAW_LINE_CAP)


def raw_text(line: bytes) -> str:
    """One line's raw text as a reject keeps it: decoded with replacement characters, capped at
    RAW_LINE_CAP characters (``ByteRange.raw_lines`` does the same for many lines at once)."""
    return line[: RAW_LINE_CAP * 4].decode("utf-8", "replace")[:RAW_LINE_CAP]


def read_new_bytes(
    file: ArchiveFile, start: int, first_line: int, is_newest: bool, end: int | None = None
) -> ByteRange:
    """Read from ``start`` to ``end`` (a line boundary from ``line_boundaries``) or to the end of the file
    as it is now, split at the last newline."""
    import numpy as np

    with file.path.open("rb") as fh:
        fh.seek(start)
        blob = fh.read() if end is None else fh.read(end - start)
    last_nl = blob.rfind(b"\n")
    # A file that ends with a newline (all but a growing one) is taken as read: slicing copies it.
    data, tail = (blob, b"") if last_nl == len(blob) - 1 else (blob[: last_nl + 1], blob[last_nl + 1 :])
    line_ends = byte_positions(np.frombuffer(data, dtype=np.uint8), 10)
    # A file whose writer moved on (it is not its series' newest) has a truncated last line: its caller
    # rejects it, and reads it again should the file grow. A chunk cut short (the file shrank since it
    # was planned) holds its partial line back for the next run, which sees the rewrite.
    truncated = bool(tail) and not is_newest and end is None
    return ByteRange(file, start, start + len(data), first_line, data, line_ends, tail, truncated)


def line_boundaries(file: ArchiveFile, start: int, step: int) -> list[int]:
    """Offsets after ``start`` at which to cut the file's new bytes into chunks of about ``step`` bytes,
    each just after a newline: the first newline at or past every ``step`` bytes (a handful of small
    reads, no scan of the file). The last chunk runs to the end of the file."""
    cuts: list[int] = []
    at = start
    with file.path.open("rb") as fh:
        while at + step < file.size:
            fh.seek(at + step - 1)
            pos = at + step - 1
            while True:
                block = fh.read(65536)
                nl = block.find(b"\n")
                if nl >= 0 or not block:
                    break
                pos += len(block)
            if nl < 0 or pos + nl + 1 >= file.size:
                break
            at = pos + nl + 1
            cuts.append(at)
    return cuts


@dataclass
class Decoded:
    """Decoded records of a byte range: ``rows`` has ``line_idx`` plus the record's top-level fields."""

    rows: pl.DataFrame
    rejects: pl.DataFrame  # line_idx (0-based within the range), reason


_REJECT_SCHEMA = pl.Schema({"line_idx": pl.Int64(), "reason": pl.String()})


_BOM = "\ufeff".encode()  # a Windows editor's byte order mark, before a file's (or an appended part's) first line
_JSON_SPACE = b" \t\r\n"  # JSON's whitespace (bytes.strip() would take \x0b and \x0c too)


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _classify_bad_line(raw: bytes) -> str:
    """Why one line did not decode: the only per-line Python, and only for lines that failed."""
    try:
        obj = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError):
        return "invalid_json"
    return "bad_field_type" if isinstance(obj, dict) else "not_an_object"


def decode(rng: ByteRange) -> Decoded:
    """Decode every complete line of ``rng`` against its kind's explicit schema.

    Lines that cannot be an object (empty, not ``{...}``) are set aside by a vectorized byte check, and
    likely bad objects by a vectorized guess (``_likely_bad``); the rest are decoded by one
    ``read_ndjson`` call, and only if that fails by chunks that are split until each bad line stands
    alone. Only suspects and bad lines are ever looked at one by one, and only bad lines are classified
    in Python. The buffer is copied at most once, without every set-aside line.
    """
    import numpy as np

    schema = RECORD_SCHEMAS[rng.file.kind]
    empty_rows = pl.DataFrame(schema={"line_idx": pl.Int64(), **schema})
    if rng.n_lines == 0:
        return Decoded(empty_rows, pl.DataFrame(schema=_REJECT_SCHEMA))
    arr = np.frombuffer(rng.data, dtype=np.uint8)
    ends = rng.line_ends
    starts = np.concatenate(([0], ends[:-1] + 1))
    last = ends - 1
    last = np.where((last >= starts) & (arr[np.maximum(last, 0)] == 13), last - 1, last)  # tolerate \r\n
    nonempty = last >= starts
    not_object = ~nonempty
    not_object[nonempty] = (arr[starts[nonempty]] != ord("{")) | (arr[last[nonempty]] != ord("}"))
    set_aside = not_object | _likely_bad(rng.data, ends, REQUIRED_OBJECTS[rng.file.kind])
    parts: list[pl.DataFrame] = []
    failed: list[int] = []
    for i in np.flatnonzero(not_object).tolist():  # an object inside JSON's whitespace (or after a BOM) is one
        inner = rng.data[starts[i] : ends[i]].removeprefix(_BOM).strip(_JSON_SPACE)
        single = _read(inner + b"\n", schema, i, 1) if inner[:1] == b"{" and inner[-1:] == b"}" else None
        if single is not None:
            parts.append(single)
        else:
            failed.append(i)
    for i in np.flatnonzero(set_aside & ~not_object).tolist():  # suspects: each read on its own
        single = _read(rng.data[starts[i] : ends[i] + 1], schema, i, 1)
        if single is not None:
            parts.append(single)
        else:
            failed.append(i)
    rest = np.flatnonzero(~set_aside)
    if rest.size:  # the rest at once, from the range itself or from one copy without the set-aside lines
        whole = rest.size == rng.n_lines
        buf, buf_ends = (rng.data, ends) if whole else _without(rng.data, starts, ends, np.flatnonzero(set_aside), rest)
        bulk: list[pl.DataFrame] = []
        bulk_failed: list[int] = []
        _read_all(buf, buf_ends, rest.size, schema, bulk, bulk_failed)
        index = pl.Series(rest, dtype=pl.Int64)
        parts.extend(df if whole else df.with_columns(line_idx=index.gather(df["line_idx"])) for df in bulk)
        failed.extend(rest[bulk_failed].tolist())
    rows = (pl.concat(parts).sort("line_idx") if len(parts) > 1 else parts[0]) if parts else empty_rows
    failed.sort()
    reasons = [_classify_bad_line(rng.data[starts[i] : ends[i]].removeprefix(_BOM)) for i in failed]
    rejects = pl.DataFrame({"line_idx": failed, "reason": reasons}, schema=_REJECT_SCHEMA)
    return Decoded(rows.select(empty_rows.columns), rejects)


def _likely_bad(data: bytes, ends: np.ndarray, objects: tuple[str, ...]) -> np.ndarray:
    """A cheap guess of the lines one ``read_ndjson`` call would fail on, from a vectorized look at every ``{``.

    Suspect: a line where a ``{`` other than the first is not a value (two records run together by a
    crash), where a required struct does not open exactly once (``"price": 5``), or with a byte that never
    occurs in UTF-8. The guess only decides speed, never the result.
    """
    import numpy as np

    n = ends.shape[0]
    arr = np.frombuffer(data, dtype=np.uint8)
    braces = byte_positions(arr, ord("{"))
    line_of = np.searchsorted(ends, braces)
    # The 8 bytes before every brace, gathered once: the ": " test and a first cut of every key's test
    # are compares on them (one gather for all, where each test gathered again). Twelve 12 MB hour files of
    # the 1M bench archive, min of 15 alternating: 258 -> 217 ms (a sixth of decode's time was this guess).
    before = _eight_before(arr, braces)
    mask, want = _window(b": ")
    is_value = (before & mask) == want  # (a brace at offset 0 or 1 has zeros before it: never a value)
    odd = np.bincount(line_of[~is_value], minlength=n)[:n] != 1
    for key in objects:
        pattern = f'"{key}": '.encode()
        mask, want = _window(pattern[-8:])
        sel = np.flatnonzero(is_value & (braces >= len(pattern)) & ((before & mask) == want))
        match = _preceded_by(arr, braces[sel], pattern)  # the whole pattern, for those few
        odd |= np.bincount(line_of[sel[match]], minlength=n)[:n] != 1
    if not data.isascii():  # C speed; only then look for bytes that never occur in UTF-8
        # One pass for the bytes >= 0xC0 (lead bytes, and those never valid), then only those are
        # checked: 1.3 ms for a 12 MB hour file against 5.5 ms comparing every byte three times.
        lead = byte_positions(arr, 0xC0, np.greater_equal)
        byte = arr[lead]
        never = lead[(byte <= 0xC1) | (byte >= 0xF5)]
        odd[np.searchsorted(ends, never)] = True
    return odd


def _eight_before(arr: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The 8 bytes before each offset in ``at`` as little-endian uint64 (the byte just before in the top
    8 bits), zeros standing in for bytes before the buffer's start."""
    import numpy as np

    got = np.zeros(at.shape[0], dtype="<u8")
    if arr.shape[0] < 8:
        near = np.arange(at.shape[0])
    else:
        words = np.ndarray(shape=(arr.shape[0] - 7,), dtype="<u8", buffer=arr, strides=(1,))
        far = at >= 8
        got[far] = words[at[far] - 8]
        near = np.flatnonzero(~far)  # a brace in the buffer's first 8 bytes: a handful at most
    for i in near.tolist():
        a = int(at[i])
        got[i] = int.from_bytes(bytes(arr[max(0, a - 8) : a]).rjust(8, b"\0"), "little")
    return got


def _preceded_by(arr: np.ndarray, at: np.ndarray, pattern: bytes) -> np.ndarray:
    """Whether the bytes just before each offset in ``at`` (all >= len(pattern)) equal ``pattern``.

    Compared 8 bytes at a time (``_eight_before``): one gather per 8 bytes instead of one per byte.
    """
    import numpy as np

    match = np.ones(at.shape[0], dtype=bool)
    for end in range(len(pattern), 0, -8):  # windows of 8 ending ``end`` bytes into the pattern
        mask, want = _window(pattern[max(0, end - 8) : end])
        match &= (_eight_before(arr, at - len(pattern) + end) & mask) == want
    return match


def _window(piece: bytes) -> tuple[np.uint64, np.uint64]:
    """(mask, value) that compare an ``_eight_before`` word with ``piece`` (at most 8 bytes) as its last bytes."""
    import numpy as np

    mask = ((1 << (8 * len(piece))) - 1) << (8 * (8 - len(piece)))
    return np.uint64(mask), np.uint64(int.from_bytes(piece.rjust(8, b"\0"), "little"))


def _without(
    buf: bytes, starts: np.ndarray, ends: np.ndarray, drop: np.ndarray, keep: np.ndarray
) -> tuple[bytes, np.ndarray]:
    """The buffer without the lines ``drop`` (a handful: the loop is over them), and its line ends."""
    import numpy as np

    view, pieces, pos = memoryview(buf), [], 0
    for i in drop.tolist():
        pieces.append(view[pos : starts[i]])
        pos = int(ends[i]) + 1
    pieces.append(view[pos:])
    return b"".join(pieces), np.cumsum(ends[keep] - starts[keep] + 1) - 1


def _read_all(
    buf: bytes, ends: np.ndarray, n: int, schema: pl.Schema, out: list[pl.DataFrame], failed: list[int]
) -> None:
    """All ``n`` lines in one call; if that fails, chunk by chunk, bisecting failing chunks."""
    whole = _read(buf, schema, 0, n)
    if whole is not None:
        out.append(whole)
        return
    for lo in range(0, n, _CHUNK_LINES):
        _decode_ranges(buf, ends, lo, min(lo + _CHUNK_LINES, n), schema, out, failed)


def _read(buf: bytes, schema: pl.Schema, offset: int, n: int) -> pl.DataFrame | None:
    """``n`` lines decoded, numbered from ``offset``; None if any line of them does not decode."""
    try:
        df = pl.read_ndjson(buf, schema=schema, row_index_name="line_idx", row_index_offset=offset)
    except Exception:  # noqa: BLE001 - any failure means: split and find the bad line
        return None
    return df.with_columns(pl.col("line_idx").cast(pl.Int64)) if df.height == n else None


def _decode_ranges(
    buf: bytes, ends: np.ndarray, lo: int, hi: int, schema: pl.Schema, out: list[pl.DataFrame], failed: list[int]
) -> None:
    """Decode lines [lo, hi) of ``buf`` with read_ndjson, bisecting around lines that fail."""
    if hi <= lo:
        return
    a = 0 if lo == 0 else int(ends[lo - 1]) + 1
    b = int(ends[hi - 1]) + 1
    df = _read(buf[a:b], schema, lo, hi - lo)
    if df is not None:
        out.append(df)
        return
    if hi - lo == 1:
        failed.append(lo)
        return
    step = -(-(hi - lo) // _FAN_OUT)
    for sub in range(lo, hi, step):
        _decode_ranges(buf, ends, sub, min(sub + step, hi), schema, out, failed)


def read_document(file: ArchiveFile) -> tuple[bytes, str]:
    """A whole-document file (universe): its bytes and content fingerprint."""
    data = file.path.read_bytes()
    return data, fingerprint(data)
