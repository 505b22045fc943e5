"""A private Redis master watched by a real ``redis-server --sentinel``, for Sentinel tests.

:func:`start_sentinel_cluster` starts, each on a free port of 127.0.0.1 in a temp dir of its
own with no persistence:

- a master ``redis-server``;
- optionally a replica of it (``replica=True``), needed for a failover;
- one sentinel (``redis-server sentinel.conf --sentinel``) monitoring the master as
  ``mymaster`` with a quorum of 1.

Every process runs in its own process group and is killed by :meth:`SentinelCluster.stop`
(the ``sentinel_cluster`` fixtures call it at teardown).  Raises :class:`SentinelUnavailable`
when ``redis-server`` is not on PATH (callers skip, saying so) or a server does not start.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.redis_server import free_port

MASTER_NAME = "mymaster"
#: How long the sentinel waits before calling an unanswering master down (ms).
DOWN_AFTER_MS = 1000
#: Sentinel's failover timeout (ms); short, so a stuck failover is retried soon.
FAILOVER_TIMEOUT_MS = 5000


class SentinelUnavailable(RuntimeError):
    """The master or the sentinel could not be started (or redis-server is missing)."""


@dataclass
class RedisProcess:
    """One ``redis-server`` started by this module."""

    port: int
    proc: subprocess.Popen
    log: Path

    def client(self, db: int = 0) -> redis.Redis:
        """A redis-py client on ``db`` of this server (caller closes it)."""
        return redis.Redis(
            "127.0.0.1", self.port, db=db, socket_timeout=10, socket_connect_timeout=2
        )

    def kill(self) -> None:
        """SIGKILL the server and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, chars: int = 3000) -> str:
        """The last ``chars`` characters of the server's log."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


@dataclass
class SentinelCluster:
    """A master, an optional replica and one sentinel watching them as :data:`MASTER_NAME`."""

    master: RedisProcess
    sentinel: RedisProcess
    workdir: Path
    replica: RedisProcess | None = None
    master_name: str = MASTER_NAME
    _procs: list[RedisProcess] = field(default_factory=list, repr=False)

    def url(self, db: int = 0) -> str:
        """``sentinel://127.0.0.1:<sentinel port>/<db>``: what the broker setting holds."""
        return f"sentinel://127.0.0.1:{self.sentinel.port}/{db}"

    def master_client(self, db: int = 0) -> redis.Redis:
        """A plain client on the current master's ``db`` (asked of the sentinel; caller closes it)."""
        host, port = self.master_address()
        return redis.Redis(host, port, db=db, socket_timeout=10, socket_connect_timeout=2)

    def master_address(self) -> tuple[str, int]:
        """The master's ``(host, port)`` as the sentinel reports it now."""
        client = self.sentinel.client()
        try:
            host, port = client.sentinel_get_master_addr_by_name(self.master_name)
        finally:
            client.close()
        return host.decode() if isinstance(host, bytes) else str(host), int(port)

    def env(self, db: int = 0) -> dict[str, str]:
        """Broker and result backend through the sentinel, and the master name (environment names)."""
        return {
            "CELERY_BROKER_URL": self.url(db),
            "CELERY_RESULT_BACKEND": self.url(db),
            "AFIRGEN_SENTINEL_MASTER_NAME": self.master_name,
        }

    def describe(self) -> str:
        """Every process's log tail, for assertion messages."""
        parts = [f"--- {name} (port {p.port}) ---\n{p.log_tail()}" for name, p in self._named()]
        return "\n".join(parts)

    def _named(self) -> list[tuple[str, RedisProcess]]:
        named = [("master", self.master), ("sentinel", self.sentinel)]
        if self.replica is not None:
            named.append(("replica", self.replica))
        return named

    def stop(self) -> None:
        """Kill every process and remove the temp dir."""
        for proc in self._procs:
            proc.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _pings(port: int) -> bool:
    client = redis.Redis("127.0.0.1", port, socket_timeout=0.3, socket_connect_timeout=0.3)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _spawn(binary: str, args: list[str], workdir: Path, name: str, port: int) -> RedisProcess:
    log = workdir / f"{name}.log"
    proc = subprocess.Popen(
        [binary, *args, "--logfile", str(log)],
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = RedisProcess(port, proc, log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        if _pings(port):
            return server
        time.sleep(0.05)
    server.kill()
    raise SentinelUnavailable(
        f"{name} redis-server on port {port} did not start: {server.log_tail(500)}"
    )


def _server_args(port: int, workdir: Path) -> list[str]:
    return [
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--daemonize",
        "no",
    ]


def start_sentinel_cluster(
    master_name: str = MASTER_NAME, *, replica: bool = False, timeout: float = 15.0
) -> SentinelCluster:
    """Start a master (and a replica if asked) and a sentinel monitoring it; wait until the
    sentinel names the master (and, with ``replica``, knows the replica)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SentinelUnavailable(
            "redis-server is not on PATH (the Sentinel tests start their own)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="afirgen-sentinel-"))
    procs: list[RedisProcess] = []
    try:
        master_port = free_port()
        master = _spawn(
            binary,
            _server_args(master_port, workdir / "master"),
            _mkdir(workdir / "master"),
            "master",
            master_port,
        )
        procs.append(master)
        replica_proc = None
        if replica:
            replica_port = free_port()
            replica_dir = _mkdir(workdir / "replica")
            replica_proc = _spawn(
                binary,
                [
                    *_server_args(replica_port, replica_dir),
                    "--replicaof",
                    "127.0.0.1",
                    str(master_port),
                ],
                replica_dir,
                "replica",
                replica_port,
            )
            procs.append(replica_proc)
        sentinel_port = free_port()
        sentinel_dir = _mkdir(workdir / "sentinel")
        conf = sentinel_dir / "sentinel.conf"  # sentinel rewrites it: it must be writable
        conf.write_text(
            f"port {sentinel_port}\n"
            "bind 127.0.0.1\n"
            f"dir {sentinel_dir}\n"
            f"sentinel monitor {master_name} 127.0.0.1 {master_port} 1\n"
            f"sentinel down-after-milliseconds {master_name} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {master_name} {FAILOVER_TIMEOUT_MS}\n"
        )
        sentinel = _spawn(
            binary, [str(conf), "--sentinel"], sentinel_dir, "sentinel", sentinel_port
        )
        procs.append(sentinel)
        cluster = SentinelCluster(master, sentinel, workdir, replica_proc, master_name, procs)
        deadline = time.monotonic() + timeout
        while True:
            if _sentinel_ready(cluster):
                return cluster
            if time.monotonic() > deadline:
                raise SentinelUnavailable(
                    f"the sentinel never reported the master{' and replica' if replica else ''}:\n"
                    + cluster.describe()
                )
            time.sleep(0.1)
    except BaseException:
        for proc in procs:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _sentinel_ready(cluster: SentinelCluster) -> bool:
    client = cluster.sentinel.client()
    try:
        master = client.sentinel_master(cluster.master_name)
        if not master.get("is_master") or master.get("is_sdown") or master.get("is_odown"):
            return False
        if cluster.replica is not None:
            replicas = client.sentinel_slaves(cluster.master_name)
            # a replica is promoted only once the sentinel has seen its link to the master up
            return any(
                int(r.get("port", 0)) == cluster.replica.port
                and not r.get("is_sdown")
                and r.get("master-link-status") == "ok"
                for r in replicas
            )
        return True
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
