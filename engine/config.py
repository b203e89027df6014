"""Run options, resolved from the command line and an optional ``observer.toml``.

A value that names an entry of ``[sources]``/``[targets]`` (the design document's
``--source=archive --target=trading_db``) resolves through the file; anything else is used as given.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import quote

import polars as pl

from schemas.records import DEFAULT_MARKET, MARKET_PATTERN, MARKET_RULE, SYMBOL_PATTERN, is_market_name

CONFIG_NAME = "observer.toml"
DEFAULT_SOURCE = "archive"
DEFAULT_TARGET = "sqlite:///trading.db"
DEFAULT_STAGING = "observer-staging"
# New bytes per commit unit (--unit-size). The peak memory follows the unit; smaller units commit more
# often and deduplicate each against what its day staged before it (10M bench archive into SQLite: 128MB
# 42-45 s at a 605-631 MB peak, 16MB 54-59 s at 499-510 MB; the README's "The command").
DEFAULT_UNIT_SIZE = "128MB"


class ConfigError(Exception):
    """Unusable options; the message is one readable sentence for the user."""


_SIZE = re.compile(r"^\s*(\d+)\s*(?:([KMG])(?:i?B)?|B)?\s*$", re.IGNORECASE)


def parse_size(text: str, what: str) -> int:
    """``16MB``, ``512KiB``, ``4096`` as bytes. K, M and G count in 1024s either way: to a user who
    sizes a commit, 16MB and 16MiB mean the same, and no one is helped by the difference."""
    m = _SIZE.match(text)
    if m is None or int(m.group(1)) == 0:
        raise ConfigError(f"{what} {text!r} is not a size: a whole number of bytes, or with KB, MB or GB (16MB)")
    return int(m.group(1)) * 1024 ** "_KMG".index((m.group(2) or "_").upper())


DEFAULT_UNIT_BYTES = parse_size(DEFAULT_UNIT_SIZE, "unit size")


@dataclass(frozen=True)
class RunOptions:
    source: Path
    target: str
    staging: Path
    market: str | None = None  # None: every market; else only rows of this market
    security_master: Path | None = None
    holidays: Path | None = None
    default_market: str = DEFAULT_MARKET
    unit_bytes: int = DEFAULT_UNIT_BYTES  # at most this many new bytes per commit (a longer line stands alone)

    @property
    def scope(self) -> str:
        return self.market or "all"


# What observer.toml may hold. Anything else is a typo that would otherwise run with a default (a
# misspelt target loads into ./trading.db), so it stops the run.
ETL_KEYS = ("source", "target", "staging", "market", "security_master", "holidays", "default_market", "unit_size")
SECTIONS = ("etl", "sources", "targets")


def _load_toml(path: Path | None) -> tuple[dict, Path]:
    """The config document (empty without a file) and the path it was looked for at."""
    cfg_path = path or Path.cwd() / CONFIG_NAME
    if not cfg_path.exists():
        if path is not None:
            raise ConfigError(f"config file {path} does not exist")
        return {}, cfg_path
    try:
        doc = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {cfg_path} is not valid TOML: {exc}") from None
    except OSError as exc:  # a directory, no permission to read it
        raise ConfigError(f"config file {cfg_path} cannot be read: {exc.strerror or exc}") from None
    _check_keys(cfg_path, doc)
    return doc, cfg_path


def _check_keys(cfg_path: Path, doc: dict) -> None:
    """Unknown sections and [etl] keys, and values that are not strings, stop the run in one sentence."""
    def unknown(where: str, key: str, known: tuple[str, ...]) -> ConfigError:
        near = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else f" (known: {', '.join(known)})"
        return ConfigError(f"config file {cfg_path}: unknown {where} {key!r}{hint}")

    for section, body in doc.items():
        if section not in SECTIONS:
            raise unknown("section", section, SECTIONS)
        if not isinstance(body, dict):
            raise ConfigError(f"config file {cfg_path}: {section} must be a [{section}] table")
        for key, value in body.items():
            if section == "etl" and key not in ETL_KEYS:
                raise unknown("key in [etl]", key, ETL_KEYS)
            if not isinstance(value, str):
                raise ConfigError(f"config file {cfg_path}: {key} in [{section}] must be a string, not {value!r}")
            if not value.strip():  # Path("") is the current directory: never what an empty value meant
                raise ConfigError(f"config file {cfg_path}: {key} in [{section}] is empty")


def resolve(
    source: str | None = None,
    target: str | None = None,
    staging: str | None = None,
    market: str | None = None,
    security_master: str | None = None,
    holidays: str | None = None,
    config: Path | None = None,
    unit_size: str | None = None,
) -> RunOptions:
    """Options from flags, else ``[etl]`` defaults of observer.toml, else built-in defaults."""
    given = {"--source": source, "--target": target, "--staging": staging, "--market": market,
             "--security-master": security_master, "--holidays": holidays, "--unit-size": unit_size}
    for flag, value in given.items():
        if value is not None and not value.strip():  # e.g. --source "$ARCHIVE" with the variable unset
            raise ConfigError(f"{flag} is empty")
    doc, cfg_path = _load_toml(config)
    etl = doc.get("etl", {})
    sources, targets = doc.get("sources", {}), doc.get("targets", {})

    # A value from the file means what it says wherever the run is started (cron, another directory):
    # a relative path in it is relative to the file's folder, like a flag's to the working directory.
    # With --config elsewhere, 'staging = "st"' made a second staging and database in the working
    # directory and reloaded the whole archive into them, successfully.
    here = cfg_path.parent

    def pick(flag: str | None, key: str, default: str | None, names: dict | None = None) -> tuple[str | None, bool]:
        """The value, and whether it came from the file: a flag (or default) naming an entry of
        ``names`` takes the entry's value, which is the file's."""
        value, from_file = (flag, False) if flag is not None else (etl.get(key, default), key in etl)
        if names is not None and value in names:
            return names[value], True
        return value, from_file

    src, src_in_file = pick(source, "source", DEFAULT_SOURCE, sources)
    tgt, tgt_in_file = pick(target, "target", DEFAULT_TARGET, targets)
    assert src is not None and tgt is not None
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", tgt):
        from engine.load import redact_target  # (engine.load imports this module)

        raise ConfigError(
            f"target {redact_target(tgt)!r} is neither a URL (sqlite:///file.db, postgresql://...) nor a name in [targets] of {CONFIG_NAME}"
        )
    if tgt_in_file:
        tgt = _sqlite_relative_to(tgt, here)
    stg, stg_in_file = pick(staging, "staging", DEFAULT_STAGING)
    mkt, mkt_in_file = pick(market, "market", None)
    default_market = etl.get("default_market", DEFAULT_MARKET)
    file = f"config file {cfg_path}: "
    for what, name in (
        (f"{file}market in [etl]" if mkt_in_file else "--market", mkt),
        (f"{file}default_market in [etl]", default_market),
    ):
        if name is not None and not is_market_name(name):
            raise ConfigError(f"{what} {name!r} is not a market name: {MARKET_RULE}")
    master, master_in_file = pick(security_master, "security_master", None)
    hol, hol_in_file = pick(holidays, "holidays", None)
    unit, unit_in_file = pick(unit_size, "unit_size", DEFAULT_UNIT_SIZE)
    return RunOptions(
        source=_path(src, here if src_in_file else None),
        target=tgt,
        staging=_path(stg, here if stg_in_file else None),  # type: ignore[arg-type]
        market=mkt,
        security_master=_path(master, here if master_in_file else None) if master else None,
        holidays=_path(hol, here if hol_in_file else None) if hol else None,
        default_market=default_market,
        unit_bytes=parse_size(unit, f"{file}unit_size in [etl]" if unit_in_file else "--unit-size"),  # type: ignore[arg-type]
    )


def _path(value: str, base: Path | None) -> Path:
    """A path option, ``~`` expanded; relative to ``base`` when given (a value from the config file)."""
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # ~someone who is not a user here
        raise ConfigError(f"path {value!r}: {value.split('/')[0]} is not a user's home directory here") from None
    return base / path if base is not None and not path.is_absolute() else path


def _sqlite_relative_to(url: str, base: Path) -> str:
    """A config file's ``sqlite:///relative.db`` as relative to the file's folder (other URLs, and
    ``:memory:`` that the target refuses, as they are); the folder percent-encoded, as a URL's path is."""
    head, rest = url[: len("sqlite:///")], url[len("sqlite:///"):]
    if head.lower() != "sqlite:///" or rest.startswith("/") or rest == ":memory:":
        return url
    return f"{head}{quote(str(base.absolute()))}/{rest}"


def _check_file(path: Path, what: str) -> None:
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory, not a file")
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")


def load_security_master(path: Path) -> pl.DataFrame:
    """``symbol,market`` CSV (extra columns ignored) mapping each symbol to its market."""
    _check_file(path, "security master")
    try:
        df = pl.read_csv(path, schema_overrides={"symbol": pl.String, "market": pl.String})
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"security master {path} is not a readable CSV: {str(exc).splitlines()[0]}") from None
    if not {"symbol", "market"} <= set(df.columns):
        raise ConfigError(f"security master {path} needs the columns symbol and market")
    df = df.select("symbol", "market").filter(pl.any_horizontal(pl.all().is_not_null()))  # (a blank line)
    half = df.filter(pl.any_horizontal(pl.all().is_null()))
    if half.height:  # a symbol left without a market would take the default market, silently
        sym, mkt = half.row(0)
        raise ConfigError(
            f"security master {path}: " + (f"{sym} has no market" if sym is not None else f"a row with market {mkt!r} has no symbol")
        )
    df = df.unique(maintain_order=True)
    twice = df.filter(pl.col("symbol").is_duplicated())
    if twice.height:  # which one wins would be the file's order, silently
        sym = twice["symbol"][0]
        markets = ", ".join(sorted(twice.filter(pl.col("symbol") == sym)["market"]))
        raise ConfigError(f"security master {path} puts {sym} in more than one market ({markets}): give each symbol one")
    if not df["symbol"].str.contains(SYMBOL_PATTERN).all():
        raise ConfigError(f"security master {path} has symbols that are not 6-character codes")
    bad = df.filter(~pl.col("market").str.contains(MARKET_PATTERN))
    if bad.height:
        raise ConfigError(f"security master {path}: {bad['market'][0]!r} is not a market name: {MARKET_RULE}")
    return df


def load_holidays(path: Path) -> frozenset[date]:
    """One ISO date a line (``#`` comments allowed): KRX holidays, flagged as non-trading days."""
    _check_file(path, "holiday list")
    try:
        content = path.read_text(encoding="utf-8-sig")  # Excel and Notepad write a BOM
    except UnicodeDecodeError as exc:
        raise ConfigError(f"holiday list {path} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    days = set()
    for n, line in enumerate(content.splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            days.add(date.fromisoformat(text))
        except ValueError:
            raise ConfigError(f"holiday list {path}, line {n}: {text!r} is not a date (YYYY-MM-DD)") from None
    return frozenset(days)
