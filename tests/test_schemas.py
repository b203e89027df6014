"""The SQLite wire form: what the loader sends (dates and times as its own text, text as string_view) is
stored exactly as the driver stores plain Arrow dates, timestamps and strings."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import adbc_driver_sqlite.dbapi as sqlite_dbapi
import polars as pl
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.tables import Column, Table, _sqlite_text, iso_by_arrow

PROBE = Table(
    name="probe",
    columns=(Column("k", "int64", False), Column("d", "date"), Column("ts", "timestamp"), Column("t", "text")),
    key=("k",),
)
instants = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda d: d.replace(tzinfo=timezone.utc)
)


def _stored(path: Path, table: pa.Table) -> list[tuple]:
    with sqlite_dbapi.connect(str(path)) as conn, conn.cursor() as cur:
        cur.adbc_ingest("probe", table, mode="create")
        conn.commit()
        cur.execute("SELECT k, d, ts, t FROM probe ORDER BY k")
        return cur.fetchall()


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(
        st.tuples(st.none() | st.dates(date(1970, 1, 1), date(2099, 12, 31)), st.none() | instants, st.none() | st.text()),
        max_size=40,
    ),
    repeat=st.booleans(),
)
def test_sqlite_text_is_what_the_driver_writes(tmp_path_factory, values, repeat) -> None:  # type: ignore[no-untyped-def]
    if repeat and values:  # a column of one value takes the formatted-once path
        values = [values[0]] * 3
    df = pl.DataFrame(
        {"k": list(range(len(values))), **{c: [v[i] for v in values] for i, c in enumerate(("d", "ts", "t"))}},
        schema=PROBE.polars_schema(),
    )
    work = tmp_path_factory.mktemp("wire")
    ours = _stored(work / "ours.db", PROBE.wire_table(df, "sqlite"))
    drivers = _stored(work / "driver.db", df.to_arrow().cast(PROBE.arrow_schema()))
    assert ours == drivers
    assert all(isinstance(ts, str) and "T" in ts for _, _, ts, _ in ours if ts is not None)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)),
        min_size=1, max_size=30,
    ),
    near=st.sampled_from([None, datetime(1000, 1, 2), datetime(1970, 1, 1), datetime(9999, 12, 30)]),
)
def test_timestamps_formatted_by_table_lookups_equal_arrows_cast(values, near) -> None:  # type: ignore[no-untyped-def]
    """The lookup formatter (a column without nulls) writes what Arrow's cast writes, at every date it takes."""
    if near is not None:  # a narrow span around an edge of its range, so that the lookups, not Arrow, format it
        values = [near + (v - datetime(1, 1, 1)) % timedelta(days=2) - timedelta(days=1) for v in values]
    col = pl.Series(values, dtype=pl.Datetime("us")).dt.replace_time_zone("UTC")
    assert _sqlite_text(col, "timestamp").to_pylist() == iso_by_arrow(col.dt.replace_time_zone(None)).to_pylist()
