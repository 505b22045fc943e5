"""``afirgen-tui --serve-metrics`` end to end: the exporter as a real subprocess against the
test Redis and real ``celery worker`` subprocesses, scraped over HTTP like Prometheus does."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.redis_server import free_port
from tests.support.restartable_redis import RestartableRedis
from tests.support.waiting import wait_until
from tests.support.workers import REPO_ROOT, worker_environ

pytestmark = pytest.mark.integration

CLEANUP = "afirgen_tasks.cleanup.cleanup_temp_files"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample of ``/metrics``, keyed by (sample name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


class Exporter:
    """``python -m tui --serve-metrics 127.0.0.1:<port>`` in a subprocess, stderr to a file."""

    def __init__(
        self, env: Mapping[str, str], log: Path, *extra: str, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tui", "--serve-metrics", f"127.0.0.1:{self.port}", *extra],
            cwd=REPO_ROOT,
            env=worker_environ(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )

    def stderr(self) -> str:
        return self.log.read_text()

    def scrape(self) -> Samples:
        return scrape(self.port)

    def wait_serving(self, timeout: float = 20.0) -> Samples:
        def ready() -> Samples | None:
            assert self.proc.poll() is None, (
                f"exporter exited {self.proc.returncode}: {self.stderr()}"
            )
            try:
                return self.scrape()
            except (urllib.error.URLError, ConnectionError):
                return None

        return wait_until(
            ready, timeout, 0.1, message=lambda: f"exporter not serving: {self.stderr()}"
        )

    def wait_for(self, predicate, what: str, timeout: float = 20.0) -> Samples:
        last: dict[str, Samples] = {}

        def check() -> Samples | None:
            last["s"] = samples = self.scrape()
            return samples if predicate(samples) else None

        return wait_until(check, timeout, 0.1, message=lambda: f"{what}; stderr: {self.stderr()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


@pytest.fixture
def exporter(afirgen_env, tmp_path) -> Iterator[Exporter]:
    exp = Exporter(afirgen_env, tmp_path / "exporter.log")
    try:
        exp.wait_serving()
        yield exp
        assert exp.stop() == 0, exp.stderr()
    finally:
        if exp.proc.poll() is None:
            exp.proc.kill()
            exp.proc.wait(10)


def connected(samples: Samples) -> bool:
    return (
        value(samples, "afirgen_events_connected") == 1 and value(samples, "afirgen_broker_up") == 1
    )


def test_waiting_by_priority_reserved_and_oldest_age(exporter, afirgen_app):
    exporter.wait_for(connected, "exporter connected")
    for priority in (1, 7, 7, 10):  # nobody consumes cleanup
        afirgen_app.send_task(CLEANUP, priority=priority)

    def waiting(s: Samples) -> bool:
        return value(s, "afirgen_queue_waiting", queue_name="cleanup", priority="7") == 2

    s = exporter.wait_for(waiting, "cleanup priority 7 waiting 2")
    assert value(s, "afirgen_queue_waiting", queue_name="cleanup", priority="1") == 1
    assert value(s, "afirgen_queue_waiting", queue_name="cleanup", priority="10") == 1
    assert value(s, "afirgen_queue_waiting", queue_name="cleanup", priority="5") == 0
    assert value(s, "celery_queue_length", queue_name="cleanup") == 4
    assert value(s, "afirgen_queue_reserved", queue_name="cleanup") == 0
    assert value(s, "celery_queue_length", queue_name="default") == 0
    sent = {"name": CLEANUP, "hostname": socket.gethostname(), "queue_name": "cleanup"}
    exporter.wait_for(
        lambda s: value(s, "celery_task_sent_total", **sent) == 4, "4 task-sent counted"
    )
    # the oldest waiting job ages poll after poll while it stays next in line
    s = exporter.wait_for(
        lambda s: (
            (value(s, "afirgen_queue_oldest_waiting_age_seconds", queue_name="cleanup") or 0) >= 1.0
        ),
        "oldest waiting age grows",
    )
    assert value(s, "afirgen_queue_oldest_waiting_age_seconds", queue_name="default") == 0


def test_real_worker_counters_runtime_and_liveness(exporter, afirgen_app, worker_factory):
    exporter.wait_for(connected, "exporter connected")
    ok = [afirgen_app.send_task(CLEANUP) for _ in range(2)]
    bad = afirgen_app.send_task(CLEANUP, kwargs={"max_age_hours": "soon"})
    # The client publishes a task, then its task-sent event: a worker already waiting can
    # publish task-received in between, and a task-received seen before its task-sent is
    # counted under queue_name "unknown".  The worker starts once the three are counted.
    sent = {"name": CLEANUP, "hostname": socket.gethostname(), "queue_name": "cleanup"}
    exporter.wait_for(
        lambda s: value(s, "celery_task_sent_total", **sent) == 3, "3 task-sent counted"
    )
    worker = worker_factory(queues=("cleanup",))
    host = worker.hostname.partition("@")[2]
    for result in ok:
        result.get(timeout=60)
    with pytest.raises(Exception, match="soon"):
        bad.get(timeout=60)

    labels = {"name": CLEANUP, "hostname": host, "queue_name": "cleanup"}

    def done(s: Samples) -> bool:
        failed = sum(
            v
            for (n, ls), v in s.items()
            if n == "celery_task_failed_total" and ("name", CLEANUP) in ls
        )
        return value(s, "celery_task_succeeded_total", **labels) == 2 and failed == 1

    s = exporter.wait_for(done, "2 succeeded and 1 failed counted")
    assert value(s, "celery_task_received_total", **labels) == 3
    assert value(s, "celery_task_started_total", **labels) == 3
    assert value(s, "celery_task_runtime_count", **labels) == 2
    assert value(s, "celery_task_retried_total", **labels) == 0  # present at 0, for rate ratios
    failed = [dict(ls) for (n, ls), _v in s.items() if n == "celery_task_failed_total"]
    assert failed[0]["exception"] == "PermanentTaskError"
    assert value(s, "celery_worker_up", hostname=host) == 1
    assert value(s, "afirgen_worker_up", worker=worker.hostname) == 1
    # an inspect round that began before the worker was up may hold its queues, not its stats
    s = exporter.wait_for(
        lambda s: (
            value(s, "celery_active_worker_count", queue_name="cleanup") == 1
            and value(s, "celery_active_process_count", queue_name="cleanup") == 1
        ),
        "inspect: one worker with one process consumes cleanup",
    )
    assert value(s, "afirgen_events_received_total") >= 9
    assert value(s, "afirgen_events_invalid_total") == 0

    worker.stop()
    exporter.wait_for(
        lambda s: value(s, "afirgen_worker_up", worker=worker.hostname) == 0, "worker-offline seen"
    )


@pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server to stop and restart"
)
def test_broker_down_keeps_serving_then_reconnects(afirgen_env, tmp_path):
    redis = RestartableRedis()
    try:
        redis.start()
        env = {
            **afirgen_env,
            "CELERY_BROKER_URL": redis.url(0),
            "CELERY_RESULT_BACKEND": redis.url(0),
        }
        exp = Exporter(env, tmp_path / "exporter.log")
        try:
            exp.wait_serving()
            exp.wait_for(connected, "connected")
            redis.stop()
            s = exp.wait_for(lambda s: value(s, "afirgen_broker_up") == 0, "broker_up 0 while down")
            assert value(s, "celery_queue_length", queue_name="default") is None  # no stale lengths
            redis.start()
            exp.wait_for(connected, "broker_up 1 and events again after the restart", timeout=30)
            assert exp.stop() == 0
            err = exp.stderr()
            assert "broker unreachable" in err and "reachable again" in err
        finally:
            if exp.proc.poll() is None:
                exp.proc.kill()
                exp.proc.wait(10)
    finally:
        redis.cleanup()


def test_secrets_never_shown_and_sigint_exits_0(afirgen_env, tmp_path):
    dead = free_port()
    env = {**afirgen_env, "CELERY_BROKER_URL": f"redis://:Sup3rSecret@127.0.0.1:{dead}/0"}
    exp = Exporter(env, tmp_path / "exporter.log")
    try:
        exp.wait_serving()
        s = exp.wait_for(lambda s: value(s, "afirgen_broker_up") == 0, "broker_up 0")
        with urllib.request.urlopen(f"http://127.0.0.1:{exp.port}/metrics", timeout=5) as response:
            assert b"Sup3rSecret" not in response.read()
        assert value(s, "afirgen_events_connected") == 0
        exp.wait_for(lambda s: "broker unreachable" in exp.stderr(), "the outage said once")
        assert exp.stop(signal.SIGINT) == 0
        err = exp.stderr()
        assert "Sup3rSecret" not in err and "***" in err, err
        assert "Traceback" not in err
    finally:
        if exp.proc.poll() is None:
            exp.proc.kill()
            exp.proc.wait(10)


@pytest.mark.parametrize(
    "listen",
    ["9808", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000", ":9808", "::1:9808", "127.0.0.1:0"],
)
def test_bad_listen_address_is_one_line_exit_2(afirgen_env, listen):
    proc = subprocess.run(
        [sys.executable, "-m", "tui", "--serve-metrics", listen],
        cwd=REPO_ROOT,
        env=worker_environ(afirgen_env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_port_in_use_is_one_line_exit_2(afirgen_env):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "tui", "--serve-metrics", f"127.0.0.1:{port}"],
            cwd=REPO_ROOT,
            env=worker_environ(afirgen_env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0], proc.stderr


def test_serve_metrics_never_imports_textual(afirgen_env):
    # A thread waits (with a deadline) until the exporter answers, checks sys.modules at
    # that moment, then stops the process the way systemd does.
    port = free_port()
    code = (
        "import os, signal, sys, threading, time, urllib.request\n"
        "from tui.cli import main\n"
        "def probe():\n"
        "    deadline = time.monotonic() + 30\n"
        "    while time.monotonic() < deadline:\n"
        "        try:\n"
        f"            urllib.request.urlopen('http://127.0.0.1:{port}/metrics', timeout=2).read()\n"
        "            break\n"
        "        except OSError:\n"
        "            time.sleep(0.05)\n"
        "    print('TEXTUAL', any(m == 'textual' or m.startswith('textual.') for m in sys.modules))\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "threading.Thread(target=probe, daemon=True).start()\n"
        f"rc = main(['--serve-metrics', '127.0.0.1:{port}'])\n"
        "print('RC', rc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=worker_environ(afirgen_env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "TEXTUAL False" in proc.stdout and "RC 0" in proc.stdout, proc.stdout + proc.stderr
