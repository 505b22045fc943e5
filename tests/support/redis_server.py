"""The Redis the tests run against, found or started once per session.

Fallback chain (the first that works wins; the choice is printed when the run starts):

1. ``env``       -- the server at ``$AFIRGEN_TEST_REDIS_URL``, and only when that names it;
2. ``spawned``   -- a private ``redis-server`` from PATH on a free port, no persistence,
   killed and its directory removed at exit;
3. ``fakeredis`` -- fakeredis' ``TcpFakeServer`` (pure Python) in a child process.  It is a
   real TCP server, so ``celery worker`` subprocesses can use it; Celery's Redis transport
   runs Lua scripts, so it needs ``fakeredis[lua]`` (lupa).

A Redis that merely answers on 127.0.0.1:6379 is never used: it may hold somebody's data,
and the tests flush the databases they take.

``AFIRGEN_TEST_FORCE_FALLBACK=env|spawned|fakeredis`` picks one kind and fails if it
is unavailable (used to prove the suite passes with no Redis installed).

Each test gets a database of its own (:class:`DbAllocator`): dbs 15 down to 2 (0 and 1
are the application's defaults), locked with a ``SET NX EX`` key inside the db so parallel
pytest processes sharing one ``AFIRGEN_TEST_REDIS_URL`` server never share one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import redis

REPO_ROOT = Path(__file__).resolve().parents[2]

Kind = Literal["env", "spawned", "fakeredis"]
KINDS: tuple[Kind, ...] = ("env", "spawned", "fakeredis")

#: Databases handed to tests, most remote from the application's defaults first.
TEST_DBS: tuple[int, ...] = tuple(range(15, 1, -1))
#: The key (inside each test db) that marks it as taken.
LOCK_KEY = "afirgen-test:lock"
LOCK_TTL_S = 900


class RedisUnavailable(RuntimeError):
    """No Redis of the requested kind could be found or started."""


@dataclass
class RedisServer:
    """A Redis server the tests may use: where it is, what kind it is, how to stop it."""

    host: str
    port: int
    kind: Kind
    password: str | None = None
    username: str | None = None
    detail: str = ""
    _stop: list = field(default_factory=list, repr=False)

    def url(self, db: int = 0) -> str:
        """``redis://[user:pass@]host:port/db`` for this server."""
        auth = ""
        if self.password is not None:
            auth = f"{self.username or ''}:{self.password}@"
        return f"redis://{auth}{self.host}:{self.port}/{db}"

    def client(self, db: int = 0, **kwargs) -> redis.Redis:
        """A redis-py client on ``db`` (caller closes it)."""
        kwargs.setdefault("socket_timeout", 10)
        return redis.Redis(
            host=self.host,
            port=self.port,
            db=db,
            password=self.password,
            username=self.username,
            **kwargs,
        )

    def describe(self) -> str:
        """One line for the test report: which Redis and why."""
        where = f"{self.host}:{self.port}"
        extra = f" ({self.detail})" if self.detail else ""
        return f"afirgen tests use Redis kind={self.kind} at {where}{extra}"

    def stop(self) -> None:
        """Stop the server if this session started it (no-op for env)."""
        while self._stop:
            self._stop.pop()()


def _pings(
    host: str,
    port: int,
    password: str | None = None,
    username: str | None = None,
    timeout: float = 0.5,
) -> bool:
    client = redis.Redis(
        host=host,
        port=port,
        password=password,
        username=username,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
    )
    try:
        return bool(client.ping())
    except (redis.exceptions.RedisError, OSError):
        return False
    finally:
        client.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _from_env() -> RedisServer:
    url = os.environ.get("AFIRGEN_TEST_REDIS_URL", "").strip()
    if not url:
        raise RedisUnavailable("AFIRGEN_TEST_REDIS_URL is not set")
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise RedisUnavailable(
            f"AFIRGEN_TEST_REDIS_URL must be redis://host:port, not {parts.scheme}://"
        )
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if not _pings(host, port, parts.password, parts.username or None, timeout=2):
        masked = urlunsplit((parts.scheme, f"{host}:{port}", parts.path, "", ""))
        raise RedisUnavailable(f"AFIRGEN_TEST_REDIS_URL={masked} does not answer PING")
    return RedisServer(
        host, port, "env", parts.password, parts.username or None, "from AFIRGEN_TEST_REDIS_URL"
    )


def _spawned() -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable("redis-server is not on PATH")
    last_error = ""
    for _attempt in range(3):  # another process may grab the free port before redis binds it
        port = free_port()
        workdir = tempfile.mkdtemp(prefix="afirgen-redis-")
        log = Path(workdir) / "redis.log"
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
                "--logfile",
                str(log),
                "--daemonize",
                "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            if _pings("127.0.0.1", port, timeout=0.2):

                def stop(proc: subprocess.Popen = proc, workdir: str = workdir) -> None:
                    proc.terminate()
                    try:
                        proc.wait(5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(5)
                    shutil.rmtree(workdir, ignore_errors=True)

                return RedisServer(
                    "127.0.0.1", port, "spawned", detail=f"{binary} pid {proc.pid}", _stop=[stop]
                )
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        last_error = (
            log.read_text(errors="replace")[-500:]
            if log.exists()
            else f"exit code {proc.returncode}"
        )
        shutil.rmtree(workdir, ignore_errors=True)
    raise RedisUnavailable(f"redis-server did not start: {last_error}")


def _fakeredis() -> RedisServer:
    try:
        import lupa  # noqa: F401  (Celery's Redis transport runs Lua scripts)
        from fakeredis import TcpFakeServer  # noqa: F401
    except ImportError as exc:
        raise RedisUnavailable(f"fakeredis[lua] is not installed ({exc})") from None
    import fakeredis

    # A child process, not a thread of the test process: every client connection costs
    # fakeredis a handler thread polling every 10 ms, and under the test process's GIL a
    # full session (hundreds of connections) slowed everything else to a crawl.
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.demo.embedded_redis", "--port", str(port)],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )

    def stop() -> None:
        proc.kill()
        proc.wait(5)
        if proc.stderr:
            proc.stderr.close()

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        if _pings("127.0.0.1", port, timeout=0.2):
            return RedisServer(
                "127.0.0.1",
                port,
                "fakeredis",
                detail=f"fakeredis {fakeredis.__version__} TcpFakeServer, pid {proc.pid}",
                _stop=[stop],
            )
        time.sleep(0.05)
    err = ""
    if proc.poll() is not None and proc.stderr:
        err = proc.stderr.read().decode(errors="replace")[-500:]
    stop()
    raise RedisUnavailable(f"fakeredis TcpFakeServer did not answer PING on port {port}: {err}")


_FINDERS = {"env": _from_env, "spawned": _spawned, "fakeredis": _fakeredis}


def find_redis(force: str | None = None) -> RedisServer:
    """Walk the fallback chain (or only ``force``) and return the first server that works.

    ``force`` defaults to ``$AFIRGEN_TEST_FORCE_FALLBACK``.  Raises :class:`RedisUnavailable`
    listing why each kind was passed over.
    """
    if force is None:
        force = os.environ.get("AFIRGEN_TEST_FORCE_FALLBACK", "").strip() or None
    if force is not None and force not in _FINDERS:
        raise RedisUnavailable(
            f"AFIRGEN_TEST_FORCE_FALLBACK={force!r} is not one of {', '.join(KINDS)}"
        )
    kinds = [force] if force else list(KINDS)
    reasons: list[str] = []
    for kind in kinds:
        try:
            server = _FINDERS[kind]()
        except RedisUnavailable as exc:
            reasons.append(f"{kind}: {exc}")
            continue
        if reasons:
            server.detail = "; ".join(
                filter(None, [server.detail, *(f"skipped {r}" for r in reasons)])
            )
        return server
    raise RedisUnavailable("no Redis for the tests: " + "; ".join(reasons))


class DbAllocator:
    """Hands out one database per test (round robin), safe across parallel pytest processes.

    A db is taken by ``SET afirgen-test:lock <token> NX EX 900`` inside it; the flush that
    follows runs in one MULTI/EXEC with a fresh lock, so no other process can slip in
    between.  :meth:`release` flushes the db (which drops the lock).
    """

    def __init__(self, server: RedisServer, dbs: tuple[int, ...] = TEST_DBS):
        self.server = server
        self.dbs = dbs
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        # Round robin: a db just released is reused last.  A worker killed at teardown may
        # leave a BRPOP pending on its db for up to a second (fakeredis answers it even
        # though the client is gone), which would swallow the next test's first message.
        self._next = 0

    def acquire(self, timeout: float = 60.0) -> int:
        """Lock a free db, flush it and return its number (waits while all are taken)."""
        deadline = time.monotonic() + timeout
        while True:
            for offset in range(len(self.dbs)):
                index = (self._next + offset) % len(self.dbs)
                db = self.dbs[index]
                client = self.server.client(db)
                try:
                    token = f"{self.owner}:{uuid.uuid4().hex}"
                    if client.set(LOCK_KEY, token, nx=True, ex=LOCK_TTL_S):
                        pipe = client.pipeline(transaction=True)
                        pipe.flushdb()
                        pipe.set(LOCK_KEY, token, ex=LOCK_TTL_S)
                        pipe.execute()
                        self._next = index + 1
                        return db
                finally:
                    client.close()
            if time.monotonic() > deadline:
                raise RedisUnavailable(
                    f"all test dbs {self.dbs[-1]}..{self.dbs[0]} stayed locked for {timeout:.0f} s"
                )
            time.sleep(0.2)

    def release(self, db: int) -> None:
        """Flush ``db``: the test's keys and the lock go together."""
        client = self.server.client(db)
        try:
            client.flushdb()
        finally:
            client.close()
