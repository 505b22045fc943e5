"""Shared fixtures: a real Redis (with a fallback chain), per-test settings and real workers.

Fixtures (see each docstring):

``redis_server``  (session)  -> :class:`tests.support.redis_server.RedisServer`
                               ``.host .port .kind .url(db) .client(db)``
``redis_db``      (function) -> int, a db of its own (15..2), flushed before and after
``redis_client``  (function) -> redis.Redis on ``redis_db``
``afirgen_env``   (function) -> dict[str, str] of CELERY_*/AFIRGEN_* for this test (also set
                               in ``os.environ`` for the test's duration)
``afirgen_settings`` (function) -> Settings loaded from that environment
``afirgen_app``   (function) -> Celery app from ``create_app(afirgen_settings)``
``worker_factory`` (function) -> ``make(queues=..., concurrency=..., ...) -> WorkerProcess``

The whole session runs with ``AFIRGEN_CONFIG`` pointing at an empty file and the data
paths in a session temp dir, so the repository's config.toml and ./var are never touched.
``AFIRGEN_TEST_FORCE_FALLBACK=spawned`` (or ``fakeredis``, ...) forces one kind of Redis.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import redis

from tests.support.redis_server import DbAllocator, RedisServer, RedisUnavailable, find_redis
from tests.support.workers import WorkerProcess

_SERVER: RedisServer | None = None
_SERVER_ERROR: str | None = None
_SESSION_DIR: Path | None = None
_SAVED_ENV: dict[str, str | None] = {}


def _get_server() -> RedisServer:
    """The session's Redis, found (or started) on first use."""
    global _SERVER, _SERVER_ERROR
    if _SERVER is None and _SERVER_ERROR is None:
        try:
            _SERVER = find_redis()
        except RedisUnavailable as exc:
            _SERVER_ERROR = str(exc)
    if _SERVER is None:
        pytest.fail(f"no Redis for the tests: {_SERVER_ERROR}", pytrace=False)
    return _SERVER


def _is_scrubbed(name: str) -> bool:
    return name.startswith(("CELERY_", "AFIRGEN_")) and not name.startswith("AFIRGEN_TEST_")


def pytest_configure(config: pytest.Config) -> None:
    global _SESSION_DIR
    # Hermetic session defaults: code under test that loads settings itself (or asks for
    # afirgen_tasks.celery_app.app) must not read ./config.toml or create ./var.
    _SESSION_DIR = Path(tempfile.mkdtemp(prefix="afirgen-tests-"))
    empty = _SESSION_DIR / "empty-config.toml"
    empty.write_text("")
    session_env = {
        "AFIRGEN_CONFIG": str(empty),
        "AFIRGEN_PATHS_DATA_DIR": str(_SESSION_DIR / "var"),
        "AFIRGEN_PATHS_REPORT_DIR": str(_SESSION_DIR / "var" / "reports"),
        "AFIRGEN_PATHS_OUTBOX_DIR": str(_SESSION_DIR / "var" / "outbox"),
        "AFIRGEN_PATHS_TEMP_DIR": str(_SESSION_DIR / "var" / "tmp"),
        "AFIRGEN_CONSOLE_AUDIT_LOG": str(_SESSION_DIR / "var" / "audit.log"),
        "AFIRGEN_HISTORY_DB": str(_SESSION_DIR / "var" / "history.sqlite3"),
    }
    for name in [n for n in os.environ if _is_scrubbed(n)]:
        _SAVED_ENV.setdefault(name, os.environ.pop(name))
    for name, value in session_env.items():
        _SAVED_ENV.setdefault(name, os.environ.get(name))
        os.environ[name] = value


def pytest_unconfigure(config: pytest.Config) -> None:
    global _SERVER
    if _SERVER is not None:
        _SERVER.stop()
        _SERVER = None
    for name, value in _SAVED_ENV.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if _SESSION_DIR is not None:
        shutil.rmtree(_SESSION_DIR, ignore_errors=True)


def pytest_sessionstart(session: pytest.Session) -> None:
    # Said when the run starts (``-q`` hides the report header), so a developer knows at
    # once which Redis the suite is about to use and flush test databases on.
    try:
        line = _get_server().describe()
    except BaseException as exc:  # pytest.fail raises Failed, a BaseException
        line = f"afirgen tests: no Redis available ({exc})"
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _SERVER is not None:
        terminalreporter.write_line(_SERVER.describe().replace("use", "used", 1))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    workers: list[WorkerProcess] = getattr(item, "_afirgen_workers", [])
    if report.failed and workers:
        for worker in workers:
            report.sections.append(
                (f"worker log {worker.hostname} ({worker.log_path})", worker.log_tail(12000))
            )


# ---- Redis ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> RedisServer:
    """The session's Redis: ``.host``, ``.port``, ``.kind`` (env/spawned/fakeredis), ``.url(db)``.

    Found by the fallback chain in :mod:`tests.support.redis_server`; stopped at session
    end if the session started it.  Use a db from ``redis_db``, never db 0.
    """
    return _get_server()


@pytest.fixture(scope="session")
def _db_allocator(redis_server: RedisServer) -> DbAllocator:
    return DbAllocator(redis_server)


@pytest.fixture
def redis_db(_db_allocator: DbAllocator) -> Iterator[int]:
    """A database number (15..2) that only this test uses, flushed before and after.

    Locked with a key inside the db, so parallel pytest processes never share one.
    """
    db = _db_allocator.acquire()
    try:
        yield db
    finally:
        _db_allocator.release(db)


@pytest.fixture
def redis_client(redis_server: RedisServer, redis_db: int) -> Iterator[redis.Redis]:
    """A redis-py client on this test's db (bytes replies)."""
    client = redis_server.client(redis_db)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def rabbitmq_vhost() -> Iterator:
    """An AMQP URL on a RabbitMQ vhost of the run's own (:mod:`tests.support.rabbitmq`).

    Deleted with every queue in it at session end; the test skips, saying why, when no
    RabbitMQ (or no ``rabbitmqctl``) is available.
    """
    from tests.support.rabbitmq import RabbitUnavailable, make_vhost

    try:
        vhost = make_vhost()
    except RabbitUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield vhost
    finally:
        vhost.remove()


# ---- settings and app -------------------------------------------------------------------


@pytest.fixture
def afirgen_env(
    tmp_path: Path, redis_server: RedisServer, redis_db: int, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The environment of one test: broker and result backend on ``redis_db``, every path under ``tmp_path``.

    The values are also put into ``os.environ`` (via monkeypatch) and every other CELERY_* /
    AFIRGEN_* variable is removed, so code that calls ``load_settings()`` itself sees them.
    Pass (a copy of) the dict to ``worker_factory(env=...)`` to change a worker's settings.
    """
    data = tmp_path / "var"
    config = tmp_path / "config.toml"
    config.write_text("# empty: the repository's config.toml must not be read by tests\n")
    env = {
        "CELERY_BROKER_URL": redis_server.url(redis_db),
        "CELERY_RESULT_BACKEND": redis_server.url(redis_db),
        "AFIRGEN_CONFIG": str(config),
        "AFIRGEN_PATHS_DATA_DIR": str(data),
        "AFIRGEN_PATHS_REPORT_DIR": str(data / "reports"),
        "AFIRGEN_PATHS_OUTBOX_DIR": str(data / "outbox"),
        "AFIRGEN_PATHS_TEMP_DIR": str(data / "tmp"),
        "AFIRGEN_CONSOLE_AUDIT_LOG": str(data / "audit.log"),
        "AFIRGEN_HISTORY_DB": str(data / "history.sqlite3"),
    }
    for name in [n for n in os.environ if _is_scrubbed(n)]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def afirgen_settings(afirgen_env: dict[str, str]):
    """``Settings`` for this test, loaded from ``afirgen_env`` (directories created)."""
    from afirgen_tasks.settings import load_settings

    settings = load_settings()
    settings.ensure_dirs()
    return settings


def make_app(settings):
    """A Celery app for ``settings`` (made current, like the worker's); close it when done."""
    from afirgen_tasks.factory import create_app

    return create_app(settings)


@pytest.fixture
def afirgen_app(afirgen_settings) -> Iterator:
    """``create_app(afirgen_settings)``: the test's Celery app, set as the current app.

    The previously current app is restored at teardown.
    """
    from celery._state import get_current_app

    previous = get_current_app()
    app = make_app(afirgen_settings)
    try:
        yield app
    finally:
        app.close()
        previous.set_current()


# ---- workers ----------------------------------------------------------------------------

WorkerFactory = Callable[..., WorkerProcess]


@pytest.fixture
def worker_factory(
    request: pytest.FixtureRequest, afirgen_app, afirgen_env: dict[str, str], tmp_path: Path
) -> Iterator[WorkerFactory]:
    """Start real ``celery worker`` subprocesses for this test; all are killed at teardown.

    ``make(queues=("default",), concurrency=1, pool="prefork", prefetch_multiplier=1,
    name=None, extra_args=(), env=None, app=None, start=True, ready_timeout=30)``
    returns a :class:`WorkerProcess` that (unless ``start=False``) is already answering
    pings, i.e. consuming its queues.  ``name`` defaults to a unique ``w<n>-<hex>``; pass the
    same name to get the same node (and the same revoked-state file).  ``env`` replaces
    ``afirgen_env`` (e.g. another broker); ``app`` is the app used to ping/inspect it.
    Each worker logs to ``tmp_path/workers/<name>.log``; on failure the log is shown.
    """
    workers: list[WorkerProcess] = []
    request.node._afirgen_workers = workers

    def make(
        queues: Sequence[str] = ("default",),
        concurrency: int = 1,
        pool: str = "prefork",
        prefetch_multiplier: int = 1,
        name: str | None = None,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        app=None,
        start: bool = True,
        ready_timeout: float = 30.0,
        loglevel: str = "info",
    ) -> WorkerProcess:
        name = name or f"w{len(workers) + 1}-{uuid.uuid4().hex[:6]}"
        worker = WorkerProcess(
            app or afirgen_app,
            env if env is not None else afirgen_env,
            tmp_path / "workers" / f"{name}.log",
            name=name,
            queues=queues,
            concurrency=concurrency,
            pool=pool,
            prefetch_multiplier=prefetch_multiplier,
            extra_args=extra_args,
            loglevel=loglevel,
        )
        workers.append(worker)
        if start:
            worker.start().wait_ready(ready_timeout)
        return worker

    try:
        yield make
    finally:
        for worker in workers:
            worker.cleanup()
