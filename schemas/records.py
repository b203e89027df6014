"""The archive's record kinds (contract sections 2-5) as explicit decode schemas.

Never infer: Polars drops keys that first appear late. Every JSON number is decoded as Float64 and
checked for integrality afterwards, because an Int64 decode silently truncates 70100.5 to 70100.
Strings stay strings; an object where a string is expected arrives as its JSON text and fails the
field's own validation.
"""

from __future__ import annotations

import re
from enum import Enum

import polars as pl

S = pl.String()
F = pl.Float64()


class Kind(str, Enum):
    SCALP = "scalp"  # K1 tick lines
    SWING = "swing"  # K2 snapshot lines
    UNIVERSE = "universe"  # K3 universe document
    SYMBOLS = "symbols"  # K4 symbol master (recognised, skipped)
    LEDGER = "ledger"  # K5/K6 system ledgers (recognised, skipped)


# Keys that mark a test row wherever they appear (contract section 2, "extra keys such as test_marker").
TEST_MARKER_KEYS = ("test_marker", "is_test", "test_mode")
TEST_SYMBOL_PREFIXES = ("TEST",)  # TEST001 and the like

SCALP_RECORD = pl.Schema(
    {
        "timestamp": S,
        "symbol": S,
        "execution_time": S,
        "price": pl.Struct({"current": F, "open": F, "high": F, "low": F, "change_rate": F, "close": F}),
        "volume": pl.Struct({"accumulated": F, "trade_value": F, "tick": F}),
        "bid_ask": pl.Struct({"ask_price": F, "bid_price": F}),
        "source": S,
        "session_id": S,
        **{k: S for k in TEST_MARKER_KEYS},
    }
)

SWING_RECORD = pl.Schema(
    {
        "ts": S,
        "session": S,
        "dataset": S,
        "market": S,
        "symbol": S,
        "price": pl.Struct({"open": F, "high": F, "low": F, "close": F}),
        "volume": F,
        "bid_price": F,
        "ask_price": F,
        "source": S,
        **{k: S for k in TEST_MARKER_KEYS},
    }
)

RECORD_SCHEMAS: dict[Kind, pl.Schema] = {Kind.SCALP: SCALP_RECORD, Kind.SWING: SWING_RECORD}

# Struct fields every well-formed line opens exactly once (``"price": {``). Used only to guess bad lines
# quickly before decoding; the decoder itself decides.
REQUIRED_OBJECTS: dict[Kind, tuple[str, ...]] = {Kind.SCALP: ("price", "volume"), Kind.SWING: ("price",)}

# Reject reasons, in the order of precedence the validator applies (the first match is reported).
REJECT_REASONS = (
    "invalid_json",
    "not_an_object",
    "bad_field_type",
    "test_row",
    "corrupt_parser_window",
    "missing_field",
    "bad_symbol",
    "bad_market",
    "bad_timestamp",
    "bad_price",
    "bad_volume",
    "truncated_line",
    "bad_universe_file",
)

TEST_SOURCES = ("websocket_test", "mock", "test")
TEST_SESSIONS = ("docker_test_session", "docker_volume_test", "quick_test")
TEST_SESSION_PREFIXES = ("test_session",)
SYMBOL_PATTERN = r"^[0-9A-Z]{6}$"
DEFAULT_MARKET = "kr_stocks"
# A market is a path segment of the staged layout (``market=<name>``) and of the run locks: letters,
# digits, '_', '.', '-', starting with a letter or digit (so never '', '.' or '..', never a '/').
MARKET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MARKET_RULE = "letters, digits, '_', '.' and '-', starting with a letter or digit, at most 64 characters"


def is_market_name(value: object) -> bool:
    """A market from a document or an option (rows are checked with MARKET_PATTERN as an expression)."""
    return isinstance(value, str) and re.match(MARKET_PATTERN, value) is not None
