"""Deduplicate on the idempotency keys: first within the batch, then against the staged partition.

A key's winner is the copy with the smallest ``winner_order`` (ticks: a copy with the exchange time,
then received first; ties: file, line), so the result never depends on how the archive was split into
runs. Comparing with the staged partition is a vectorized anti-join (new keys) and inner join (a copy
that beats the loaded one).

Ticks are matched on ``(symbol, trade_date, acc_volume)``: the day's cumulative volume rises with
every trade, so it names one trade of a symbol's day, whether a copy carries the exchange time or not
(a v0 line, a null ``execution_time``). A row's ``event_time`` (part of the primary key) is the
winner's: its exchange time, else its receive time, so when a better copy wins later the row's
primary key moves (a delete and an insert). Matching on the contract's key, with the exchange time in
it, let a copy without one and a copy with one become two rows whose primary keys could be equal (the
receive second being the exchange second): staging held both, and PostgreSQL's upsert failed on
every run. ``tick_volume`` is recomputed from each symbol's first new trade on, so a late trade also
updates its successor; a staged row that changes is rewritten with the other rows of its part only.

A partition's rows also change when the holiday list does (``reflag_partition``): their quality flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence
from datetime import date, datetime
from pathlib import Path

import polars as pl

from schemas.tables import SCALP_TICKS, Table
from staging.layout import PART_INDEX, part_files, partition_dir, read_parts, with_partition_columns


@dataclass
class PartitionDelta:
    """What one partition's commit changes."""

    table: Table
    market: str
    day: date
    inserts: pl.DataFrame  # keys new to the partition: bulk append
    updates: pl.DataFrame  # rows that replace a loaded one (a better copy, a recomputed tick_volume): upsert
    deletes: pl.DataFrame  # primary keys of loaded rows whose replacement has another primary key
    loaded: int  # input rows that became the winner of their key
    duplicates: int  # input rows that lost to another copy
    rewrite: pl.DataFrame | None  # the partition's whole new content, when appending a part won't do
    obsolete: list[Path]  # staged parts replaced by ``rewrite``


def dedup_key(table: Table) -> list[str]:
    """The columns two copies of one record share: the primary key, but for ticks without the time, which
    differs between a copy that carries the exchange time and one that does not. A subset of the primary
    key, so winners that differ in it never share a primary key."""
    if table is SCALP_TICKS:
        return ["symbol", "trade_date", "acc_volume"]
    return list(table.key)


def winners_in_batch(df: pl.DataFrame, table: Table) -> tuple[pl.DataFrame, int]:
    """One row per record, the winning copy, in key order; and how many copies lost.

    Only the sort columns are sorted and compared with their predecessor (the first of each key wins);
    the whole rows are gathered once, winners only: a quarter less CPU than sorting every column and
    hashing the keys again for ``unique``.
    """
    if df.height == 0:
        return df, 0
    dk = dedup_key(table)
    order = df.select(pl.arg_sort_by([*dk, *table.winner_order], nulls_last=True)).to_series()
    first = (
        df.select(dk)[order]
        .select((pl.int_range(pl.len()) == 0) | pl.any_horizontal(pl.col(c).ne_missing(pl.col(c).shift(1)) for c in dk))
        .to_series()
    )
    out = df.select(table.column_names)[order.filter(first)]
    return out, df.height - out.height


def _beats(order: list[str]) -> pl.Expr:
    """Lexicographic ``new < staged`` over the winner order columns (staged ones prefixed ``_s_``)."""
    result: pl.Expr = pl.lit(False)
    for col in reversed(order):
        new, old = pl.col(col), pl.col(f"_s_{col}")
        result = (new < old) | ((new == old) & result)
    return result


def _tick_volume(df: pl.DataFrame) -> pl.DataFrame:
    """Increase of the day's cumulative volume over the symbol's previous trade; null for the first."""
    return df.with_columns(
        tick_volume=(pl.col("acc_volume") - pl.col("acc_volume").shift(1)).over(
            "symbol", order_by=["acc_volume", "event_time"]
        )
    )


def resolve_partition(
    staging: Path, table: Table, market: str, day: date, batch: pl.DataFrame, compact_at: int = 16
) -> PartitionDelta:
    """Compare one partition's batch winners with what is staged there.

    Staged rows that change (a better copy, a recomputed tick_volume) are rewritten with the commit's
    inserts into its one new part, together with the rest of the parts that held them: a late trade in
    a day's last hour rewrites that hour's part, not the whole day, so a commit's memory follows its own
    size. Only a partition that would reach ``compact_at`` parts is rewritten whole.
    """
    in_path = set(table.partition_by)
    dk = [k for k in dedup_key(table) if k not in in_path]  # match columns (partition columns are equal)
    pk = [k for k in table.key if k not in in_path]
    order = [c for c in table.winner_order if c not in dk]
    is_ticks = table is SCALP_TICKS
    files = part_files(partition_dir(staging, table, market, day))
    cols = table.column_names
    stored = list(dict.fromkeys([*pk, *order, *(["time_source", "tick_volume"] if is_ticks else [])]))
    parts = _Parts(files, table, market, day)
    compact = bool(files) and len(files) + 1 >= compact_at  # rewritten whole: read it whole, once
    staged = (
        parts.rows(range(len(files))).select([*stored, PART_INDEX])
        if compact
        else read_parts(files, table, stored, part_index=True)
    )
    deletes = pl.DataFrame(schema=table.polars_schema(list(table.key)))

    if staged.height == 0:
        inserts, updates, dups = batch, batch.clear(), 0
    else:
        moved_pk = [c for c in pk if c not in dk]  # primary-key columns that may differ between copies
        probe = staged.select(
            [*dk, *[pl.col(c).alias(f"_s_{c}") for c in dict.fromkeys([*order, *moved_pk])]]
        )
        inserts = batch.join(probe, on=dk, how="anti", nulls_equal=True)
        both = batch.join(probe, on=dk, how="inner", nulls_equal=True)
        better = both.filter(_beats(order))
        dups = both.height - better.height
        if moved_pk:
            moved = better.filter(pl.any_horizontal(pl.col(c) != pl.col(f"_s_{c}") for c in moved_pk))
            deletes = moved.select(
                [pl.col(f"_s_{c}").alias(c) if c in moved_pk else pl.col(c) for c in table.key]
            )
        updates = better
    loaded = inserts.height + updates.height
    neighbours = pl.DataFrame(schema=table.polars_schema())
    if is_ticks:
        inserts, updates, neighbours = _recompute_tick_volume(parts, staged, inserts, updates, dk, pk)
    inserts = inserts.select(cols)
    updates = updates.select(cols)
    all_updates = pl.concat([updates, neighbours]) if neighbours.height else updates

    rewrite: pl.DataFrame | None = None
    obsolete: list[Path] = []
    if files and (all_updates.height or compact):
        replaced = all_updates.select(dk)
        touched = list(range(len(files))) if compact else _parts_holding(staged, replaced, dk)
        rest = parts.rows(touched).join(replaced, on=dk, how="anti", nulls_equal=True)
        rewrite = pl.concat([rest.select(cols), all_updates, inserts]).sort(list(table.key))
        obsolete = [files[i] for i in touched]
    return PartitionDelta(table, market, day, inserts, all_updates, deletes, loaded, dups, rewrite, obsolete)


def reflag_partition(
    staging: Path, table: Table, market: str, day: date, flag: pl.Expr, stamp: datetime
) -> PartitionDelta | None:
    """A staged partition's rows whose quality flag ``flag`` computes differently now (the holiday list
    changed): upserted with the run's ``stamp`` as their etl_timestamp, as any row a run changes, and the
    partition rewritten whole (a day at most); None when no flag changes."""
    files = part_files(partition_dir(staging, table, market, day))
    if not files:
        return None
    rows = with_partition_columns(read_parts(files, table), table, market, day).with_columns(
        _changed=pl.col("quality_flag") != flag
    )
    if not rows["_changed"].any():
        return None
    rows = rows.with_columns(
        quality_flag=flag,
        etl_timestamp=pl.when("_changed").then(pl.lit(stamp, dtype=pl.Datetime("us", "UTC"))).otherwise("etl_timestamp"),
    )
    changed = rows.filter("_changed").select(table.column_names)
    rewrite = rows.select(table.column_names).sort(list(table.key))
    return PartitionDelta(
        table, market, day, changed.clear(), changed, pl.DataFrame(schema=table.polars_schema(list(table.key))),
        0, 0, rewrite, files,
    )


class _Parts:
    """Whole rows of a partition's staged parts (partition columns added), each part read at most once."""

    def __init__(self, files: list[Path], table: Table, market: str, day: date) -> None:
        self.files, self.table, self.market, self.day = files, table, market, day
        self._read: dict[int, pl.DataFrame] = {}

    def rows(self, which: Sequence[int]) -> pl.DataFrame:
        for i in which:
            if i not in self._read:
                rows = with_partition_columns(read_parts([self.files[i]], self.table), self.table, self.market, self.day)
                self._read[i] = rows.with_columns(pl.lit(i, pl.UInt32).alias(PART_INDEX))
        return pl.concat([self._read[i] for i in which])  # never empty: only parts that hold rows are asked for


def _parts_holding(staged: pl.DataFrame, keys: pl.DataFrame, on: list[str]) -> list[int]:
    """Indexes of the parts whose staged rows match ``keys`` on ``on``."""
    hit = staged.join(keys.select(on), on=on, how="semi", nulls_equal=True)
    return sorted(hit[PART_INDEX].unique().to_list())


def _recompute_tick_volume(
    parts: _Parts,
    staged: pl.DataFrame,
    inserts: pl.DataFrame,
    updates: pl.DataFrame,
    dk: list[str],
    pk: list[str],
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """tick_volume over the partition's winners; staged rows whose value changes become updates."""
    if staged.height == 0:  # a new partition (nothing staged, so nothing updated either)
        return _tick_volume(inserts), updates, pl.DataFrame(schema=SCALP_TICKS.polars_schema())
    ident = list(dict.fromkeys([*dk, "event_time"]))
    order = ["acc_volume", "event_time"]
    kept = staged.select([*ident, "tick_volume"]).join(updates.select(dk), on=dk, how="anti", nulls_equal=True)
    new = pl.concat([inserts.select(ident), updates.select(ident)])
    # Only staged trades at or after a symbol's first new one (in tick_volume's order) can change, and
    # the staged trade just before it gives that first one its value: a day's later hour touches a
    # handful of staged rows, not the whole day.
    first = new.sort(["symbol", *order]).group_by("symbol", maintain_order=True).first()
    near = kept.join(first.select("symbol", *[pl.col(c).alias(f"_lo_{c}") for c in order]), on="symbol", how="inner")
    after = (pl.col("acc_volume") > pl.col("_lo_acc_volume")) | (
        (pl.col("acc_volume") == pl.col("_lo_acc_volume")) & (pl.col("event_time") >= pl.col("_lo_event_time"))
    )
    tail = near.filter(after)
    before = (  # the last staged trade before the first new one: of the symbol's highest volume below it
        near.filter(~after)
        .filter(pl.col("acc_volume") == pl.col("acc_volume").max().over("symbol"))
        .sort(["symbol", *order])
        .group_by("symbol", maintain_order=True)
        .last()
    )
    every = pl.concat([before.select(ident), tail.select(ident), new])
    tv = (  # the trade before has no predecessor here: its own value is left as it is
        _tick_volume(every).join(before.select(dk), on=dk, how="anti", nulls_equal=True).select([*dk, "tick_volume"])
    )
    inserts = inserts.drop("tick_volume").join(tv, on=dk, how="left", nulls_equal=True)
    updates = updates.drop("tick_volume").join(tv, on=dk, how="left", nulls_equal=True)
    changed = (
        tail.join(tv.rename({"tick_volume": "_tv"}), on=dk, how="inner", nulls_equal=True)
        .filter(pl.col("tick_volume").ne_missing(pl.col("_tv")))
        .select([*pk, "_tv"])
    )
    neighbours = pl.DataFrame(schema=SCALP_TICKS.polars_schema())
    if changed.height:
        # A row this commit rewrites carries its etl_timestamp, as a better copy does: a reader that pulls
        # rows newer than its last pull must see the changed value (new rows exist: they changed it).
        stamp = (inserts if inserts.height else updates).item(0, "etl_timestamp")
        neighbours = (
            parts.rows(_parts_holding(staged, changed, pk))
            .join(changed, on=pk, how="inner")
            .with_columns(tick_volume=pl.col("_tv"), etl_timestamp=pl.lit(stamp, dtype=pl.Datetime("us", "UTC")))
            .select(SCALP_TICKS.column_names)
        )
    return inserts, updates, neighbours
