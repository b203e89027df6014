"""Quality flags: what a trader must know about a row that is valid but not ordinary.

Vocabulary (a row gets the first that applies): ``non_trading_day`` (weekend or listed holiday; swing
cycles repeat stale quotes all day), ``out_of_hours`` (outside 09:00-15:30 KST), ``degraded`` (the
exchange time is unknown and the receive time stands in for it), ``normal``.
"""

from __future__ import annotations

from datetime import date, time

import polars as pl

SESSION_OPEN = time(9, 0)
SESSION_CLOSE = time(15, 30)


def quality_flag(kst_time: pl.Expr, degraded: pl.Expr, holidays: frozenset[date]) -> pl.Expr:
    """Flag expression from naive KST wall-clock time (``normalize.kst_wall``) and a 'time is estimated' condition."""
    day = kst_time.dt.date()
    non_trading = kst_time.dt.weekday() >= 6
    if holidays:
        non_trading = non_trading | day.is_in(sorted(holidays))
    tod = kst_time.dt.time()
    out_of_hours = (tod < SESSION_OPEN) | (tod > SESSION_CLOSE)
    return (
        pl.when(non_trading)
        .then(pl.lit("non_trading_day"))
        .when(out_of_hours)
        .then(pl.lit("out_of_hours"))
        .when(degraded)
        .then(pl.lit("degraded"))
        .otherwise(pl.lit("normal"))
    )
