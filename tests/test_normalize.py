"""Timestamps: the fast parse of the Observer's own form gives the general parse's result for any text."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.normalize import parse_instant, with_instant


def both(values: list[str | None]) -> tuple[pl.Series, pl.Series]:
    df = pl.DataFrame({"t": values}, schema={"t": pl.String})
    fast = with_instant(df.lazy(), "t", "v").collect()["v"]
    general = df.select(parse_instant(pl.col("t")))["t"]
    return fast, general


def two(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).map(lambda n: f"{n:02d}")


# Near misses of "2026-03-03T09:30:00.832418+09:00" in every field: the forms the contract names, and what
# a lenient or a strict parser could read differently (a month 13, a second 60, a space, 5 or 9 digits).
TIMESTAMPS = st.builds(
    lambda pre, y, mo, d, sep, h, mi, s, frac, suffix: f"{pre}{y}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{suffix}",
    st.sampled_from(["", "", "", " ", "+", "0"]),
    st.sampled_from(["2026", "2025", "1970", "0000", "9999", "20261", "226"]),
    st.one_of(two(0, 13), st.sampled_from(["1", "3"])),
    st.one_of(two(0, 32), st.sampled_from(["3", "29", "30"])),
    st.sampled_from(["T", "T", " ", "t"]),
    st.one_of(two(0, 25), st.just("9")),
    two(0, 61),
    two(0, 61),
    st.one_of(st.just(""), st.just("."), st.text("0123456789", min_size=1, max_size=9).map(lambda f: "." + f)),
    st.sampled_from(
        ["+09:00", "+09:00", "+09:00", "Z", "+00:00", "-05:30", "", "+0900", "+09:00x", "+09", "+23:59", "+24:00", "\n"]
    ),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(TIMESTAMPS, st.none(), st.text(max_size=40)), min_size=1, max_size=30))
def test_the_fast_parse_equals_the_general_one(values: list[str | None]) -> None:
    fast, general = both(values)
    # as microseconds since the epoch: Python's datetime has no year 0, which both parses accept
    assert fast.dtype == general.dtype == pl.Datetime("us", "UTC")
    assert fast.cast(pl.Int64).to_list() == general.cast(pl.Int64).to_list()


def test_the_forms_of_the_contract() -> None:
    fast, general = both(
        [
            "2026-01-30T13:05:12.844213+09:00",  # a tick's receive time
            "2026-01-30T13:05:12+09:00",  # µs = 0: no fraction
            "2026-01-21T22:29:31.528819Z",  # swing ts before 2026-01-26
            "2026-01-30T13:05:12.844213+00:00",  # a misconfigured host
            "2026-01-30T17:05:41.118204",  # naive: KST (universe generated_at)
            "2026-02-30T13:05:12.844213+09:00",  # no such day
        ]
    )
    utc = timezone.utc
    assert fast.to_list() == general.to_list() == [
        datetime(2026, 1, 30, 4, 5, 12, 844213, utc),
        datetime(2026, 1, 30, 4, 5, 12, tzinfo=utc),
        datetime(2026, 1, 21, 22, 29, 31, 528819, utc),
        datetime(2026, 1, 30, 13, 5, 12, 844213, utc),
        datetime(2026, 1, 30, 8, 5, 41, 118204, utc),
        None,
    ]
