"""Replay an archive as it arrived: files in order, the newest one growing byte by byte."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from engine.scan import discover
from schemas.records import Kind


@dataclass(frozen=True)
class Piece:
    rel: str
    data: bytes
    start: int  # offset of this file in the timeline
    whole: bool  # documents appear whole or not at all


def timeline(root: Path) -> list[Piece]:
    files, _ = discover(root)
    files.sort(key=lambda f: (f.file_date, f.series, f.sort_key, f.rel))
    pieces, pos = [], 0
    for f in files:
        data = f.path.read_bytes()
        pieces.append(Piece(f.rel, data, pos, f.kind not in (Kind.SCALP, Kind.SWING)))
        pos += len(data)
    return pieces


def total_bytes(pieces: list[Piece]) -> int:
    return pieces[-1].start + len(pieces[-1].data) if pieces else 0


def materialize(dest: Path, pieces: list[Piece], cut: int, late: dict[str, int] | None = None) -> None:
    """The archive as it was when ``cut`` bytes of the timeline had been written; a file named in
    ``late`` stops at that many bytes until the whole timeline is written (a writer that finishes its
    last line only after the next file has begun)."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in pieces:
        if p.start >= cut:
            continue
        n = min(len(p.data), cut - p.start)
        if late and p.rel in late and cut < total_bytes(pieces):
            n = min(n, late[p.rel])
        if p.whole and n < len(p.data):
            continue
        path = dest / p.rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.stat().st_size != n:
            path.write_bytes(p.data[:n])


def copy_files(dest: Path, root: Path, rels: list[str]) -> None:
    for rel in rels:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest / rel)
