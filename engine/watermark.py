"""The watermark, kept twice: per-file byte offsets in the Parquet manifest, per (source_type, market)
high-water marks in the ``etl_watermark`` table.

Truth: the manifest says how far each file was consumed (it drives what the next run reads); the
database says which commits happened (``etl_runs.commits``) and is what readers query. A manifest
commit is staged before the database transaction and promoted after it, so after any crash
``reconcile`` can tell an interrupted commit that the database has (finish it) from one it has not
(undo it). They can then never disagree by more than that one commit.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from engine.load import Target
from schemas.tables import ETL_WATERMARK
from staging import manifest


def reconcile(staging: Path, scope: str, target: Target) -> list[str]:
    """Finish or undo this scope's interrupted commits, asking the database which ones happened."""
    return manifest.recover(staging, scope, lambda run, seq: target.committed_seq(run) >= seq)


def watermark_rows(
    rows: pl.DataFrame, source_type: str, time_col: str, run_id: str, now: datetime
) -> pl.DataFrame:
    """The high-water mark of freshly loaded rows, per market."""
    if rows.height == 0:
        return pl.DataFrame(schema=ETL_WATERMARK.polars_schema())
    return (
        rows.group_by("market")
        .agg(last_processed_ts=pl.col(time_col).max(), last_processed_file=pl.col("source_file").max())
        .with_columns(
            source_type=pl.lit(source_type),
            run_id=pl.lit(run_id),
            updated_at=pl.lit(now, dtype=pl.Datetime("us", "UTC")),
        )
        .select(ETL_WATERMARK.column_names)
        .cast(dict(ETL_WATERMARK.polars_schema()))
    )
