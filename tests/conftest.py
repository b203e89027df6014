"""Shared fixtures: real targets (SQLite file, PostgreSQL database) and generated archives.

PostgreSQL: set ``OBSERVER_ETL_TEST_PG`` to a server URL (default
``postgresql://postgres@127.0.0.1:5432/test``). Each test gets a database of its own, dropped after.
Outside CI a missing server skips those tests with that hint; in CI (``CI=true``) it fails them.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Iterator

import pytest

PG_URL = os.environ.get("OBSERVER_ETL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_admin():  # type: ignore[no-untyped-def]
    import adbc_driver_postgresql.dbapi as pg

    return pg.connect(PG_URL, autocommit=True)


def _pg_reason() -> str | None:
    try:
        conn = _pg_admin()
        conn.close()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"no PostgreSQL at {PG_URL} ({str(exc).splitlines()[0]}); set OBSERVER_ETL_TEST_PG to a server URL"


_PG_REASON = _pg_reason()


def pg_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    if _PG_REASON is not None:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI: {_PG_REASON}")
        pytest.skip(_PG_REASON)
    name = f"etl_test_{secrets.token_hex(4)}"
    admin = _pg_admin()
    cur = admin.cursor()
    cur.execute(f"CREATE DATABASE {name}")
    base, _, _ = PG_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        cur.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        cur.fetchall()
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.close()
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def target_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every core test runs against both targets from this one fixture."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'trading.db'}"
    else:
        yield from pg_database_url()


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from pg_database_url()


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A small generated archive with all the dirt, and what the generator says must come out."""
    from bench.generate import generate_archive

    root = tmp_path_factory.mktemp("gen") / "archive"
    expected = generate_archive(root, days=6, symbols=4, ticks_per_hour=40, seed=11)
    return root, expected


@pytest.fixture(scope="session")
def big_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Large enough that a load takes a second or more over a couple dozen commits (~100k lines)."""
    from bench.generate import generate_archive

    root = tmp_path_factory.mktemp("big") / "archive"
    generate_archive(root, days=8, symbols=6, ticks_per_hour=3000, seed=5)
    return root
