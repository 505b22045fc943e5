"""A PostgreSQL database the tests may use: one of their own, created for the run and dropped.

The server is ``$AFIRGEN_TEST_PG_URL`` if set (a URL to a database of a role allowed to
``CREATE DATABASE``), else ``postgresql://postgres@127.0.0.1:5432/postgres`` (trust auth).
The tests create ``afirgen_test_<hex>`` there (UTF8) and drop it at the end; they never touch
another database.  When the server cannot be reached the caller skips, saying why.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL database could be had for the tests."""


def admin_url() -> str:
    return os.environ.get("AFIRGEN_TEST_PG_URL") or DEFAULT_ADMIN_URL


def _with_db(url: str, dbname: str) -> str:
    """``url`` pointing at ``dbname`` instead (its credentials, host and options kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


@contextmanager
def pg_database() -> Iterator[str]:
    """A new UTF8 database ``afirgen_test_<hex>``; yields its connection string, drops it after.

    Raises PostgresUnavailable (the reason in its message) when it cannot be created.
    """
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a runtime dependency
        raise PostgresUnavailable(f"psycopg is not installed ({exc})") from None
    from afirgen_tasks.settings import mask_url

    url = admin_url()
    shown = mask_url(url)  # a skip reason or error must not print the password
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        raise PostgresUnavailable(f"PostgreSQL not reachable at {shown}: {exc}") from None
    name = f"afirgen_test_{uuid.uuid4().hex[:12]}"
    try:
        admin.execute(f"CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0")
    except psycopg.Error as exc:
        admin.close()
        raise PostgresUnavailable(f"cannot create a test database at {shown}: {exc}") from None
    try:
        yield _with_db(url, name)
    finally:
        try:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            admin.close()


def reset_schema(url: str) -> None:
    """Empty the test database (its ``public`` schema and what is in it), as new."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")
