"""Transform: decoded records into typed table rows, or a reject reason per line.

All validation is one vectorized reason chain per record kind; its order is the documented
precedence (``schemas.records.REJECT_REASONS``). Instants are stored in UTC; trade dates and
session hours are computed in KST explicitly (the default zone of Polars is UTC).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import polars as pl

from engine.quality import quality_flag
from engine.scan import date_from_digits
from schemas.records import (
    DEFAULT_MARKET,
    MARKET_PATTERN,
    MARKET_RULE,
    SYMBOL_PATTERN,
    TEST_MARKER_KEYS,
    TEST_SESSION_PREFIXES,
    TEST_SESSIONS,
    TEST_SOURCES,
    TEST_SYMBOL_PREFIXES,
    Kind,
    is_market_name,
)
from schemas.tables import MARKET_UNIVERSE, SCALP_TICKS, SCHEMA_VERSION, SWING_SNAPSHOTS, Table

# KST (Asia/Seoul) has been UTC+09:00 without daylight saving since 1988 (contract section 6: "no DST"), so
# trade dates and session hours come from fixed-offset arithmetic: about 10x cheaper than a zone lookup
# per value, and the same result for every instant the Observer can have written.
KST_OFFSET = timedelta(hours=9)
_MAX_EXACT = float(2**53)  # from here on a JSON number decoded as float may not be the one written (2**53 + 1 reads as 2**53)


@dataclass(frozen=True)
class Context:
    """What normalization needs besides the rows: market assignment, holidays, the run's clock."""

    default_market: str = DEFAULT_MARKET
    security_master: pl.DataFrame | None = None  # columns symbol, market
    holidays: frozenset[date] = frozenset()
    etl_timestamp: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def kst_wall(utc: pl.Expr) -> pl.Expr:
    """A UTC instant as naive KST wall-clock time (dates, weekdays, session hours)."""
    return utc.dt.replace_time_zone(None) + KST_OFFSET


def row_quality_flag(table: Table, holidays: frozenset[date]) -> pl.Expr:
    """A tick's or snapshot's quality flag from the row's own columns: computed so when it loads, and again
    on the rows staged when the holiday list changes (``dedup.reflag_partition``).

    Its day is always the row's trade date: a tick's ``event_time`` is its trade date plus the exchange
    time (or its receive time, whose date the trade date is), a snapshot's trade date is its time's."""
    if table is SCALP_TICKS:
        return quality_flag(kst_wall(pl.col("event_time")), pl.col("time_source") == "receive", holidays)
    if table is SWING_SNAPSHOTS:
        return quality_flag(kst_wall(pl.col("snap_time")), pl.lit(False), holidays)
    raise ValueError(f"{table.name} has no quality flag")


def utc_from_kst_wall(wall: pl.Expr) -> pl.Expr:
    """Naive KST wall-clock time as a UTC instant."""
    return (wall - KST_OFFSET).dt.replace_time_zone("UTC")


def parse_instant(s: pl.Expr) -> pl.Expr:
    """ISO-8601 text to a UTC instant: offset forms as written, ``Z`` as UTC, naive as KST. (A second 60
    rolls over: the callers reject it, ``leap_second``.)"""
    text = (
        pl.when(s.str.ends_with("Z"))
        .then(s.str.strip_suffix("Z") + "+00:00")
        .when(s.str.contains(r"[+-]\d\d:\d\d$"))
        .then(s)
        .otherwise(s + "+09:00")
    )
    return text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", strict=False, time_unit="us", time_zone="UTC")


def leap_second(s: pl.Expr) -> pl.Expr:
    """A second 60 (``23:59:60``), which the parsers roll over into the next minute, and at the end of a
    KST day into the next trade date: no clock the Observer runs on writes one, so it is no instant."""
    return s.str.slice(17, 2) == "60"


# What the Observer writes nearly everywhere (contract sections 2 and 3): KST wall time, six fractional
# digits and a literal "+09:00" (a whole second has no fraction; swing ts before 2026-01-26 ends in "Z").
# A format without an offset directive stays on Polars' own parser, where ``%:z`` sends every value
# through chrono: 66 against 152 ms for one 10M-archive day's 191,656 tick timestamps (one thread, best
# of five), about 4 s of the reading thread's CPU over a 10M run.
_OBSERVER_FORMAT = "%Y-%m-%dT%H:%M:%S.%6f+09:00"


def with_instant(df: pl.LazyFrame, text: str, name: str) -> pl.LazyFrame:
    """``df`` with column ``name`` = ``parse_instant(text)``, the Observer's own form parsed first.

    Only the values that form leaves null go through ``parse_instant``, so every value gets the general
    parse's result (tests/test_normalize.py compares the two). Two steps, not one expression: in one,
    Polars evaluates the fast parse twice (for the value and for the null test)."""
    fast = f"_fast_{name}"
    observer_form = pl.col(text).str.to_datetime(_OBSERVER_FORMAT, strict=False, time_unit="us")
    rest = pl.when(pl.col(fast).is_null()).then(pl.col(text))  # null where the fast parse succeeded
    return (
        df.with_columns(utc_from_kst_wall(observer_form).alias(fast))
        .with_columns(pl.coalesce(fast, parse_instant(rest)).alias(name))
        .drop(fast)
    )


def _is_test_row(source: str, session: str) -> pl.Expr:
    sess = pl.col(session)
    cond = pl.col(source).is_in(TEST_SOURCES) | sess.is_in(TEST_SESSIONS)
    for prefix in TEST_SESSION_PREFIXES:
        cond = cond | sess.str.starts_with(prefix)
    for key in TEST_MARKER_KEYS:
        cond = cond | pl.col(key).is_not_null()
    for prefix in TEST_SYMBOL_PREFIXES:
        cond = cond | pl.col("symbol").str.starts_with(prefix)
    return cond.fill_null(False)


# Instants this archive can hold: KST 2000-01-01 up to 2100-01-01 (the Observer collects from 2026). A
# fixed range, not the clock, so the result never depends on when a run happens. Outside it a line is a
# bad_timestamp: a year 10000 has no Python date to partition by, a year 0 no text SQLite stores, and a
# year 9999 would set a watermark that never moves back.
_FIRST_INSTANT = datetime(1999, 12, 31, 15, tzinfo=timezone.utc)
_END_INSTANT = datetime(2099, 12, 31, 15, tzinfo=timezone.utc)


def _out_of_range(instant: pl.Expr) -> pl.Expr:
    """True where an instant is present and outside the archive's range."""
    return instant.is_not_null() & ~instant.is_between(_FIRST_INSTANT, _END_INSTANT, closed="left")


def _not_int(x: pl.Expr) -> pl.Expr:
    """True where a decoded number is present but not an exact integer."""
    return (x.is_not_null() & ((x != x.floor()) | (x.abs() >= _MAX_EXACT) | x.is_nan())).fill_null(False)


def _bad_count(x: pl.Expr) -> pl.Expr:
    """Present but not a non-negative integer (an optional price, a volume, a trade value)."""
    return _not_int(x) | (x < 0).fill_null(False)


def _int_or_null(x: pl.Expr, zero_is_missing: bool) -> pl.Expr:
    """Validated float to Int64; 0 means 'missing upstream' for prices (contract section 2)."""
    out = x.cast(pl.Int64, strict=False)
    return pl.when(out == 0).then(None).otherwise(out) if zero_is_missing else out


def _valid_hhmmss(s: pl.Expr) -> pl.Expr:
    h = s.str.slice(0, 2).cast(pl.Int32, strict=False)
    m = s.str.slice(2, 2).cast(pl.Int32, strict=False)
    sec = s.str.slice(4, 2).cast(pl.Int32, strict=False)
    return (s.str.contains(r"^\d{6}$") & (h < 24) & (m < 60) & (sec < 60)).fill_null(False)


def _hms(s: pl.Expr) -> pl.Expr:
    return pl.duration(
        hours=s.str.slice(0, 2).cast(pl.Int64, strict=False),
        minutes=s.str.slice(2, 2).cast(pl.Int64, strict=False),
        seconds=s.str.slice(4, 2).cast(pl.Int64, strict=False),
    )


def _assign_market(df: pl.LazyFrame, ctx: Context, record_market: str | None) -> pl.LazyFrame:
    """Security master first, then the record's own market field, then the configured default."""
    fallback = pl.lit(ctx.default_market)
    if record_market is not None:
        fallback = pl.col(record_market).fill_null(fallback)
    if ctx.security_master is not None:
        master = ctx.security_master.lazy().rename({"market": "_master_market"})
        df = df.join(master, on="symbol", how="left", maintain_order="left")
        return df.with_columns(market=pl.col("_master_market").fill_null(fallback)).drop("_master_market")
    return df.with_columns(market=fallback)


def _reason(chain: list[tuple[str, pl.Expr]]) -> pl.Expr:
    expr: pl.Expr = pl.lit(None, dtype=pl.String)
    for name, cond in reversed(chain):
        expr = pl.when(cond).then(pl.lit(name)).otherwise(expr)
    return expr


def _split(df: pl.LazyFrame, columns: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Collect the valid rows and the rejects in one pass over the shared plan."""
    df = df.cache()
    rejects = df.filter(pl.col("reason").is_not_null()).select("source_file", "source_line", "reason")
    rows = df.filter(pl.col("reason").is_null()).select(columns)
    rows_df, rejects_df = pl.collect_all([rows, rejects])
    return rows_df, rejects_df


def normalize_scalp(raw: pl.LazyFrame, ctx: Context) -> tuple[pl.DataFrame, pl.DataFrame]:
    """K1 tick lines -> (scalp_ticks rows, rejects). ``raw`` has source_file, source_line and K1 fields."""
    p, v, ba = pl.col("price").struct, pl.col("volume").struct, pl.col("bid_ask").struct
    df = with_instant(raw, "timestamp", "recv_time").with_columns(
        _price=pl.coalesce(p.field("current"), p.field("close")),
        _cur=p.field("current"),
        _open=p.field("open"),
        _high=p.field("high"),
        _low=p.field("low"),
        change_rate=p.field("change_rate"),
        _acc=v.field("accumulated"),
        _value=v.field("trade_value"),
        _ask=ba.field("ask_price"),
        _bid=ba.field("bid_price"),
    )
    et = pl.col("execution_time")
    corrupt = (
        (pl.col("_cur") >= 1) & (pl.col("_cur") <= 5) & (pl.col("_cur") == pl.col("_cur").floor())
    ).fill_null(False) & _valid_hhmmss(pl.col("symbol"))
    chain = [
        # The collector writes HHMMSS there; only a test harness writes an ISO datetime (contract section 2).
        ("test_row", _is_test_row("source", "session_id") | et.str.contains(r"^\d{4}-\d{2}-\d{2}[T ]").fill_null(False)),
        ("corrupt_parser_window", corrupt),
        (
            "missing_field",
            pl.any_horizontal(pl.col("timestamp", "symbol", "_price", "_acc").is_null()),
        ),
        ("bad_symbol", ~pl.col("symbol").str.contains(SYMBOL_PATTERN).fill_null(False)),
        (
            "bad_timestamp",
            pl.col("recv_time").is_null() | _out_of_range(pl.col("recv_time")) | leap_second(pl.col("timestamp"))
            | (et.is_not_null() & ~_valid_hhmmss(et)),
        ),
        (
            "bad_price",
            _not_int(pl.col("_price"))
            | (pl.col("_price") <= 0).fill_null(False)
            | pl.any_horizontal(_bad_count(pl.col(c)) for c in ("_open", "_high", "_low", "_ask", "_bid")),
        ),
        # A cumulative volume of 0 is "missing upstream" (contract section 2), not a trade: it is the key
        # that tells a symbol's trades of a day apart, so two such ticks would pass for copies of one.
        ("bad_volume", _bad_count(pl.col("_acc")) | (pl.col("_acc") == 0).fill_null(False) | _bad_count(pl.col("_value"))),
    ]
    df = df.with_columns(reason=_reason(chain))
    trade_date = kst_wall(pl.col("recv_time")).dt.date()
    exchange_kst = trade_date.cast(pl.Datetime("us")) + _hms(et)
    df = df.with_columns(
        trade_date=trade_date,
        event_time=pl.when(et.is_not_null())
        .then(utc_from_kst_wall(exchange_kst))
        .otherwise(pl.col("recv_time").dt.truncate("1s")),
        time_source=pl.when(et.is_not_null()).then(pl.lit("exchange")).otherwise(pl.lit("receive")),
    )
    df = _assign_market(df, ctx, record_market=None)
    df = df.with_columns(
        price=_int_or_null(pl.col("_price"), zero_is_missing=False),
        day_open=_int_or_null(pl.col("_open"), True),
        day_high=_int_or_null(pl.col("_high"), True),
        day_low=_int_or_null(pl.col("_low"), True),
        acc_volume=_int_or_null(pl.col("_acc"), False),
        acc_trade_value=_int_or_null(pl.col("_value"), False),
        tick_volume=pl.lit(None, dtype=pl.Int64),  # filled by dedup over the partition's trades
        bid_price=_int_or_null(pl.col("_bid"), True),
        ask_price=_int_or_null(pl.col("_ask"), True),
        schema_version=pl.lit(SCHEMA_VERSION),
        etl_timestamp=pl.lit(ctx.etl_timestamp, dtype=pl.Datetime("us", "UTC")),
    )
    df = df.with_columns(quality_flag=row_quality_flag(SCALP_TICKS, ctx.holidays))
    return _split(df, SCALP_TICKS.column_names)


def normalize_swing(raw: pl.LazyFrame, ctx: Context) -> tuple[pl.DataFrame, pl.DataFrame]:
    """K2 snapshot lines -> (swing_snapshots rows, rejects)."""
    p = pl.col("price").struct
    df = with_instant(raw, "ts", "snap_time").with_columns(
        _open=p.field("open"),
        _high=p.field("high"),
        _low=p.field("low"),
        _close=p.field("close"),
    )
    chain = [
        ("test_row", _is_test_row("source", "session")),
        ("missing_field", pl.any_horizontal(pl.col("ts", "symbol", "_close", "volume").is_null())),
        ("bad_symbol", ~pl.col("symbol").str.contains(SYMBOL_PATTERN).fill_null(False)),
        # A market that is there must name a directory; none at all takes the default (_assign_market).
        ("bad_market", pl.col("market").is_not_null() & ~pl.col("market").str.contains(MARKET_PATTERN)),
        ("bad_timestamp", pl.col("snap_time").is_null() | _out_of_range(pl.col("snap_time")) | leap_second(pl.col("ts"))),
        (
            "bad_price",
            _not_int(pl.col("_close"))
            | (pl.col("_close") <= 0).fill_null(False)
            | pl.any_horizontal(
                _bad_count(pl.col(c)) for c in ("_open", "_high", "_low", "bid_price", "ask_price")
            ),
        ),
        ("bad_volume", _bad_count(pl.col("volume"))),
    ]
    df = df.with_columns(reason=_reason(chain))
    df = _assign_market(df, ctx, record_market="market")
    kst = kst_wall(pl.col("snap_time"))
    df = df.with_columns(
        trade_date=kst.dt.date(),
        day_open=_int_or_null(pl.col("_open"), True),
        day_high=_int_or_null(pl.col("_high"), True),
        day_low=_int_or_null(pl.col("_low"), True),
        close=_int_or_null(pl.col("_close"), False),
        acc_volume=_int_or_null(pl.col("volume"), False),
        bid_price=_int_or_null(pl.col("bid_price"), True),
        ask_price=_int_or_null(pl.col("ask_price"), True),
        session_id=pl.col("session"),
        schema_version=pl.lit(SCHEMA_VERSION),
        etl_timestamp=pl.lit(ctx.etl_timestamp, dtype=pl.Datetime("us", "UTC")),
    )
    df = df.with_columns(quality_flag=row_quality_flag(SWING_SNAPSHOTS, ctx.holidays))
    return _split(df, SWING_SNAPSHOTS.column_names)


NORMALIZERS = {Kind.SCALP: normalize_scalp, Kind.SWING: normalize_swing}


def _shown(value: object) -> str:
    """A document's value in a message: as JSON, cut to 40 characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "…"


@dataclass(frozen=True)
class UniverseDoc:
    """A K3 document's membership: the date it names (its file's date if none) and when it was written."""

    day: date
    generated_at: datetime | None  # UTC; None for the simplified older files, or one that is no time (see note)
    rows: pl.DataFrame  # market_universe rows, every market (may be empty: that day's membership is empty)
    note: str | None = None  # something the run should say about the document (it loads)


def normalize_universe(doc: object, rel: str, file_date: date, ctx: Context) -> UniverseDoc | str:
    """A K3 document -> its market_universe rows, or why the whole file is rejected (``bad_universe_file``).

    A document is the day's whole membership: one bad entry makes the rest no membership at all, so the
    file is rejected whole and the cause (which entry, and why) goes into the run's warnings."""
    if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict) or not isinstance(doc.get("symbols"), list):
        return "it is not an object with a metadata object and a symbols list"
    meta = doc["metadata"]
    named = meta.get("date")  # the simplified files' "20260131" too; absent: the file name's date
    day = file_date if named is None else date_from_digits(named) if isinstance(named, str) else None
    if day is None or not date(2000, 1, 1) <= day < date(2100, 1, 1):  # the instants' range, in KST
        return f"its metadata.date {_shown(named)} is not a date from 2000 to 2099 (YYYY-MM-DD or YYYYMMDD)"
    for i, s in enumerate(doc["symbols"]):
        if not isinstance(s, str):
            return f"symbols[{i}] is {_shown(s)}, not a string"
    df = pl.DataFrame({"symbol": doc["symbols"]}, schema={"symbol": pl.String}).unique(maintain_order=True)
    bad = df.filter(~pl.col("symbol").str.contains(SYMBOL_PATTERN))
    if bad.height:
        first = bad["symbol"][0]
        return f"symbols[{doc['symbols'].index(first)}] is {_shown(first)}, not a 6-character code"
    market = meta.get("market")
    if market is not None and not is_market_name(market):
        # a market names a staging directory: never '..' or 'a/b'
        return f"its market {_shown(market)} is not a market name ({MARKET_RULE})"
    # When it was written decides which document a date takes ("last writer wins"). A time in 9999 would
    # win its date for good: rejected. One that does not read as a time (a space for the T, no seconds)
    # leaves the document ranked as a simplified file is, by its file name's date; the run says so.
    written = meta.get("generated_at")
    text = pl.lit(written if isinstance(written, str) else None, dtype=pl.String)
    instant = parse_instant(text)
    generated, outside = pl.select(
        pl.when(~leap_second(text)).then(instant).alias("at"), _out_of_range(instant).alias("outside")
    ).row(0)
    if outside:
        return f"its metadata.generated_at {_shown(written)} is not a time from 2000 to 2099"
    note = None
    if written is not None and generated is None:
        note = (
            f"its metadata.generated_at {_shown(written)} is not an ISO 8601 time: it is ranked among the "
            "documents of its date as written at its file name's date, 00:00 KST"
        )
    lf = df.lazy().with_columns(market_field=pl.lit(market, dtype=pl.String))
    lf = _assign_market(lf, ctx, record_market="market_field")
    rows = lf.with_columns(
        date=pl.lit(day, dtype=pl.Date),
        generated_at=pl.lit(generated, dtype=pl.Datetime("us", "UTC")),
        schema_version=pl.lit(SCHEMA_VERSION),
        etl_timestamp=pl.lit(ctx.etl_timestamp, dtype=pl.Datetime("us", "UTC")),
        source_file=pl.lit(rel),
        source_line=pl.lit(0, dtype=pl.Int64),
        quality_flag=pl.lit("normal"),
    ).select(MARKET_UNIVERSE.column_names).collect()
    return UniverseDoc(day, generated, rows, note)
