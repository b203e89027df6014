"""Deduplicate on the idempotency keys: first within the batch, then against the staged partition.

A key's winner is the copy with the smallest ``winner_order`` (received first; ties: file, line), so
the result never depends on how the archive was split into runs. Comparing with the staged
partition is a vectorized anti-join (new keys) and inner join (a copy that beats the loaded one).
For ticks, ``tick_volume`` is recomputed over the partition's winners, so a late trade also updates
its successor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from schemas.tables import SCALP_TICKS, Table
from staging.layout import part_files, partition_dir, read_partition


@dataclass
class PartitionDelta:
    """What one partition's commit changes."""

    table: Table
    market: str
    day: date
    inserts: pl.DataFrame  # keys new to the partition: bulk append
    updates: pl.DataFrame  # keys whose row changes (a better copy, or a recomputed tick_volume): upsert
    loaded: int  # input rows that became the winner of their key
    duplicates: int  # input rows that lost to another copy
    rewrite: pl.DataFrame | None  # the partition's whole new content, when appending a part won't do
    obsolete: list[Path]  # staged parts replaced by ``rewrite``


def winners_in_batch(df: pl.DataFrame, table: Table) -> tuple[pl.DataFrame, int]:
    """One row per key, the winning copy; and how many copies lost."""
    if df.height == 0:
        return df, 0
    out = df.sort([*table.key, *table.winner_order]).unique(subset=list(table.key), keep="first", maintain_order=True)
    return out, df.height - out.height


def _join_key(table: Table) -> list[str]:
    return [k for k in table.key if k not in table.partition_by]


def _beats(order: tuple[str, ...]) -> pl.Expr:
    """Lexicographic ``new < staged`` over the winner order columns (staged ones prefixed ``_s_``)."""
    result: pl.Expr = pl.lit(False)
    for col in reversed(order):
        new, old = pl.col(col), pl.col(f"_s_{col}")
        result = (new < old) | ((new == old) & result)
    return result


def _tick_volume(df: pl.DataFrame) -> pl.DataFrame:
    """Increase of the day's cumulative volume over the symbol's previous trade; null for the first."""
    return df.sort("symbol", "acc_volume", "event_time").with_columns(
        tick_volume=(pl.col("acc_volume") - pl.col("acc_volume").shift(1)).over("symbol")
    )


def resolve_partition(
    staging: Path, table: Table, market: str, day: date, batch: pl.DataFrame, compact_at: int = 16
) -> PartitionDelta:
    """Compare one partition's batch winners with what is staged there."""
    key = _join_key(table)
    order = tuple(c for c in table.winner_order if c not in key)  # key columns are equal after the join
    files = part_files(partition_dir(staging, table, market, day))
    is_ticks = table is SCALP_TICKS
    probe_cols = list(dict.fromkeys([*key, *order, *(["acc_volume", "tick_volume"] if is_ticks else [])]))
    staged = read_partition(staging, table, market, day, probe_cols) if files else None
    cols = table.column_names

    if staged is None or staged.height == 0:
        inserts, updates = batch, batch.clear()
        dups = 0
    else:
        probe = staged.select([*key, *order]).rename({c: f"_s_{c}" for c in order})
        inserts = batch.join(probe, on=key, how="anti")
        both = batch.join(probe, on=key, how="inner")
        better = both.filter(_beats(order))
        updates = better.select(cols)
        dups = both.height - better.height
    loaded = inserts.height + updates.height

    neighbours = pl.DataFrame(schema=table.polars_schema())
    if is_ticks:
        old = staged.select(key + ["tick_volume"]) if staged is not None else pl.DataFrame(
            schema=SCALP_TICKS.polars_schema([*key, "tick_volume"])
        )
        kept = old.join(updates.select(key), on=key, how="anti")
        every = pl.concat(
            [
                kept.select(key).with_columns(_src=pl.lit(0)),
                inserts.select(key).with_columns(_src=pl.lit(1)),
                updates.select(key).with_columns(_src=pl.lit(2)),
            ]
        )
        every = _tick_volume(every)
        tv = every.select([*key, "tick_volume"])
        inserts = inserts.drop("tick_volume").join(tv, on=key, how="left").select(cols)
        updates = updates.drop("tick_volume").join(tv, on=key, how="left").select(cols)
        changed = (
            kept.join(tv.rename({"tick_volume": "_tv"}), on=key, how="inner")
            .filter(pl.col("tick_volume").ne_missing(pl.col("_tv")))
            .select(key + ["_tv"])
        )
        if changed.height:
            full = read_partition(staging, table, market, day).with_columns(
                pl.lit(market).alias("market"), pl.lit(day).alias("trade_date")
            )
            neighbours = (
                full.join(changed, on=key, how="inner")
                .with_columns(tick_volume=pl.col("_tv"))
                .select(cols)
            )

    all_updates = pl.concat([updates, neighbours]) if neighbours.height else updates
    rewrite: pl.DataFrame | None = None
    obsolete: list[Path] = []
    if files and (all_updates.height or len(files) + 1 >= compact_at):
        full = read_partition(staging, table, market, day).with_columns(
            pl.lit(market).alias(table.partition_by[0]), pl.lit(day).alias(table.partition_by[1])
        )
        rest = full.join(all_updates.select(key), on=key, how="anti").select(cols)
        rewrite = pl.concat([rest, all_updates, inserts]).sort(table.key)
        obsolete = files
    return PartitionDelta(table, market, day, inserts, all_updates, loaded, dups, rewrite, obsolete)
