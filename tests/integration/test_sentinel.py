"""Redis Sentinel end to end: a real master ``redis-server`` and a real ``redis-server
--sentinel`` watching it (:mod:`tests.support.sentinel`), real workers, ``--check`` as a
subprocess, the console's queue poller, and the atomic fetch behind the sentinel.

Every test uses a db of the private master (flushed before and after), reached only through
``sentinel://127.0.0.1:<sentinel port>/<db>`` and the master name.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping

import pytest
import redis
from celery.result import AsyncResult
from kombu import Connection, Consumer, Exchange, Producer, Queue

from afirgen_tasks.factory import REDIS_SENTINEL_TRANSPORT, create_app
from afirgen_tasks.redis_transport import WAKEUP_PREFIX, SentinelTransport
from afirgen_tasks.settings import load_settings
from tests.support.chaos import TaskEventRecorder, backend_states
from tests.support.redis_server import free_port
from tests.support.sentinel import SentinelCluster, SentinelUnavailable, start_sentinel_cluster
from tests.support.waiting import wait_until
from tests.support.workers import REPO_ROOT, worker_environ
from tui.demo import SMTPSink
from tui.sources.queue_lengths import make_queue_poller
from tui.sources.redis_conn import SentinelLookupError, redis_client, sentinel_master

pytestmark = pytest.mark.integration

CLEANUP = "afirgen_tasks.cleanup.cleanup_temp_files"
NOTIFY = "afirgen_tasks.email.send_notification_email"
DB = 3
QUEUE = Queue("jobs", Exchange("jobs", type="direct"), routing_key="jobs")
OPTIONS = {"priority_steps": list(range(10)), "sep": ":", "visibility_timeout": 3600}


def _start(replica: bool = False) -> SentinelCluster:
    try:
        return start_sentinel_cluster(replica=replica)
    except SentinelUnavailable as exc:
        if "not on PATH" in str(exc):
            pytest.skip(str(exc))
        raise


@pytest.fixture(scope="module")
def cluster() -> Iterator[SentinelCluster]:
    """A master and a sentinel for this module (no replica)."""
    started = _start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def master(cluster: SentinelCluster) -> Iterator[redis.Redis]:
    """A plain client on the master's test db, flushed before and after the test."""
    client = cluster.master_client(DB)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def sentinel_env(
    afirgen_env: dict[str, str],
    cluster: SentinelCluster,
    master: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """``afirgen_env`` with broker and result backend behind the sentinel (also in os.environ)."""
    env = {**afirgen_env, **cluster.env(DB)}
    for name, value in cluster.env(DB).items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def sentinel_settings(sentinel_env: dict[str, str]):
    settings = load_settings()
    settings.ensure_dirs()
    return settings


@pytest.fixture
def sentinel_app(sentinel_settings) -> Iterator:
    from celery._state import get_current_app

    previous = get_current_app()
    app = create_app(sentinel_settings)
    try:
        yield app
    finally:
        app.close()
        previous.set_current()


def run_check(env: Mapping[str, str], *args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "tui", "--check", *args],
        cwd=REPO_ROOT,
        env=worker_environ(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout, proc.stderr


def lines_by_name(stdout: str) -> dict[str, tuple[str, str]]:
    out = {}
    for line in stdout.splitlines():
        status, name, detail = (line.split(None, 2) + ["", ""])[:3]
        out[name] = (status, detail)
    return out


# ---- workers ----------------------------------------------------------------------------


def test_a_worker_behind_the_sentinel_runs_a_task_with_the_atomic_fetch(
    sentinel_app, sentinel_env, master, worker_factory, cluster
) -> None:
    worker = worker_factory(queues=("cleanup",), env=sentinel_env, app=sentinel_app)
    result = sentinel_app.send_task(
        CLEANUP, kwargs={"max_age_hours": 1}, queue="cleanup", priority=1
    )
    assert result.get(timeout=30)["status"] == "ok"
    assert result.state == "SUCCESS"
    # The job and its result went to the master the sentinel names.
    assert master.exists(f"celery-task-meta-{result.id}")
    log = worker.log_text()
    assert "atomic fetch on (afirgen_tasks.redis_transport:SentinelTransport)" in log, (
        worker.log_tail()
    )
    assert "atomic fetch OFF" not in log
    assert (
        f"Connected to {REDIS_SENTINEL_TRANSPORT}://:**@127.0.0.1:{cluster.sentinel.port}/{DB}"
        in log
    )


def test_a_job_held_by_a_sigkilled_worker_comes_back_through_the_sentinel(
    sentinel_app, sentinel_env, master, worker_factory
) -> None:
    visibility = 8
    sink = SMTPSink(delay=(3.0, 3.0), refuse_rate=0.0, seed=1).start()
    try:
        env = {
            **sentinel_env,
            "AFIRGEN_SMTP_HOST": "127.0.0.1",
            "AFIRGEN_SMTP_PORT": str(sink.port),
            "AFIRGEN_SMTP_SECURITY": "none",
            "CELERY_VISIBILITY_TIMEOUT": str(visibility),
            "CELERY_TASK_TIME_LIMIT": "6",
            "CELERY_TASK_SOFT_TIME_LIMIT": "5",
        }
        rescuer = worker_factory(queues=("cleanup",), env=env, app=sentinel_app, name="rescuer")
        victim = worker_factory(queues=("email",), env=env, app=sentinel_app, name="victim")
        with TaskEventRecorder(sentinel_app) as events:
            result = sentinel_app.send_task(
                NOTIFY,
                kwargs={
                    "recipient_email": "duty@example.org",
                    "subject": "Shift change",
                    "body": "Night shift at 22:00.",
                },
            )
            wait_until(
                lambda: master.hlen("unacked") == 1 and events.received[result.id] == 1,
                timeout=20,
                message=lambda: f"the victim never took the job (unacked={master.hlen('unacked')})",
            )
            victim.kill(signal.SIGKILL, group=True)
            victim.proc.wait(5)
            reply = sentinel_app.control.add_consumer(
                "email", destination=[rescuer.hostname], reply=True, timeout=5
            )
            assert reply and "ok" in reply[0][rescuer.hostname], reply
            wait_until(
                lambda: backend_states(master, [result.id])[result.id] == "SUCCESS",
                timeout=visibility + 25,
                interval=0.2,
                message=lambda: f"not redelivered: unacked={master.hlen('unacked')}",
            )
            assert AsyncResult(result.id, app=sentinel_app).worker == rescuer.hostname
            assert events.received[result.id] == 2
        assert master.hlen("unacked") == 0
    finally:
        sink.stop()


# ---- the atomic fetch, step by step (as tests/integration/test_atomic_fetch.py) ---------


@pytest.fixture
def connections(cluster: SentinelCluster) -> Iterator[list[Connection]]:
    made: list[Connection] = []
    yield made
    for conn in made:
        conn.release()


def connect(made: list[Connection], cluster: SentinelCluster, **options) -> Connection:
    conn = Connection(
        cluster.url(DB),
        transport=REDIS_SENTINEL_TRANSPORT,
        transport_options={**OPTIONS, "master_name": cluster.master_name, **options},
    )
    made.append(conn)
    return conn


def queued(client: redis.Redis) -> int:
    return sum(client.llen(k) for k in client.keys("jobs*"))


def _drain(conn: Connection, timeout: float = 0.5) -> bool:
    try:
        conn.drain_events(timeout=timeout)
    except TimeoutError:
        pass
    return False


def test_the_fetch_behind_the_sentinel_records_the_job_in_the_same_step(
    connections, cluster, master
) -> None:
    producer = connect(connections, cluster)
    Producer(producer).publish(
        {"n": 1}, exchange=QUEUE.exchange, routing_key="jobs", declare=[QUEUE]
    )
    assert queued(master) == 1  # on the master the sentinel names

    conn = connect(connections, cluster)
    assert type(conn.transport) is SentinelTransport
    Consumer(conn, [QUEUE], callbacks=[lambda body, message: None]).consume()
    conn.transport.cycle.on_poll_start()
    wait_until(lambda: queued(master) == 0, timeout=5, message="the fetch never reached the master")
    # SIGKILLed here: the reply is never read, and the job is already in unacked.
    conn.default_channel.client.connection.disconnect()
    assert master.hlen("unacked") == 1 and master.zcard("unacked_index") == 1
    payload, exchange, routing_key = json.loads(next(iter(master.hvals("unacked"))))
    assert (exchange, routing_key) == ("jobs", "jobs")
    assert json.loads(base64.b64decode(payload["body"])) == {"n": 1}

    survivor = connect(connections, cluster, visibility_timeout=0)
    survivor.default_channel.qos.restore_visible(num=10, interval=1)
    got: list[dict] = []
    with Consumer(
        survivor, [QUEUE], callbacks=[lambda body, message: (got.append(body), message.ack())]
    ):
        wait_until(
            lambda: _drain(survivor) or got, timeout=10, message="the restored job never came"
        )
    assert got == [{"n": 1}]
    assert master.hlen("unacked") == 0 and master.zcard("unacked_index") == 0


def test_a_connection_error_does_not_switch_to_kombus_stock_transport(sentinel_app) -> None:
    """kombu takes the next ``;`` URL's scheme as the transport on a failover switch."""
    url = "sentinel://127.0.0.1:1;sentinel://127.0.0.1:2"
    conn = sentinel_app.connection_for_write(url)
    try:
        conn.maybe_switch_next()
        conn.maybe_switch_next()
        assert type(conn.transport) is SentinelTransport
        assert conn.alt == url.split(";")
    finally:
        conn.release()
    stock = Connection(url, transport=REDIS_SENTINEL_TRANSPORT)
    stock.maybe_switch_next()
    assert type(stock.transport) is not SentinelTransport  # the bug the strategy avoids
    stock.release()


# ---- console and --check ----------------------------------------------------------------


def test_the_queue_poller_reads_priority_lengths_through_the_sentinel(
    sentinel_app, sentinel_settings, master
) -> None:
    for priority, n in ((10, 2), (3, 1), (1, 3)):
        for _ in range(n):
            sentinel_app.send_task(
                CLEANUP, kwargs={"max_age_hours": 1}, queue="cleanup", priority=priority
            )
    poller = make_queue_poller(sentinel_app, settings=sentinel_settings)
    snapshot = poller.poll()
    assert snapshot.available, snapshot.error
    cleanup = snapshot.queues["cleanup"]
    assert cleanup.waiting == 6
    assert {p: n for p, n in cleanup.by_priority.items() if n} == {10: 2, 3: 1, 1: 3}
    assert master.llen("cleanup:9") == 3  # operator 1 is wire step 9 on the master itself


def test_the_event_reader_process_reads_events_through_the_sentinel(
    sentinel_app, sentinel_settings, master
) -> None:
    from tui.sources.event_process import ProcessEventReceiver
    from tui.sources.redis_events import make_event_receiver

    receiver = make_event_receiver(sentinel_app, sentinel_settings, 1000)
    assert isinstance(receiver, ProcessEventReceiver)  # the default on a sentinel:// broker
    receiver.start()
    try:
        assert receiver.wait_connected(20), receiver.status
        with sentinel_app.connection_for_write() as conn:
            dispatcher = sentinel_app.events.Dispatcher(
                conn, hostname="probe@sentinel", enabled=True
            )
            dispatcher.send("worker-heartbeat", freq=2.0, active=0, processed=0)
            dispatcher.close()
        seen: list[dict] = []
        wait_until(
            lambda: seen.extend(receiver.drain(100)) or seen,
            20,
            message=lambda: f"the event through the sentinel ({receiver.status})",
        )
        assert seen[0]["type"] == "worker-heartbeat" and seen[0]["hostname"] == "probe@sentinel"
        assert receiver.invalid == 0
    finally:
        receiver.stop()


def test_redis_client_follows_the_sentinel_and_says_why_it_cannot(
    sentinel_settings, cluster
) -> None:
    client = redis_client(cluster.url(DB), sentinel_settings)
    try:
        assert client.ping()
        assert client.connection_pool.connection_kwargs["db"] == DB
    finally:
        client.close()
    assert sentinel_master(cluster.url(DB), sentinel_settings) == ("127.0.0.1", cluster.master.port)
    with pytest.raises(
        SentinelLookupError, match=r"know no master named 'nope' \(they monitor: mymaster\)"
    ):
        sentinel_master(cluster.url(DB), sentinel_settings, master_name="nope")
    with pytest.raises(SentinelLookupError, match="no sentinel answered"):
        sentinel_master(
            f"sentinel://127.0.0.1:{free_port()}/0", sentinel_settings, socket_timeout=1
        )


def test_check_with_a_worker_behind_the_sentinel_is_healthy_and_names_the_master(
    sentinel_app, sentinel_env, worker_factory, cluster
) -> None:
    worker_factory(
        queues=("default", "email", "reports", "analytics", "cleanup"),
        env=sentinel_env,
        app=sentinel_app,
    )
    code, out, err = run_check(sentinel_env)
    checks = lines_by_name(out)
    assert code == 0, out + err
    status, detail = checks["sentinel"]
    assert status == "OK"
    assert f"master 'mymaster' is at 127.0.0.1:{cluster.master.port}" in detail
    assert f"sentinel://127.0.0.1:{cluster.sentinel.port}/{DB}" in detail
    for name in ("broker", "backend", "workers", "queues", "events", "backlog[cleanup]"):
        assert checks[name][0] == "OK", (name, out)


def test_a_dead_sentinel_first_in_the_list_costs_workers_and_check_nothing(
    sentinel_app, sentinel_env, worker_factory, cluster
) -> None:
    """redis-py's default retries (1-10 s backoff) made each new connection wait ~7 s on it."""
    dead = free_port()
    url = f"sentinel://127.0.0.1:{dead}/{DB};{cluster.url(DB)}"
    env = {**sentinel_env, "CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}
    worker_factory(queues=("cleanup",), env=env, app=sentinel_app, ready_timeout=10)
    code, out, err = run_check(env)
    assert code == 1, out + err  # four queues without a consumer, and nothing else wrong
    checks = lines_by_name(out)
    assert checks["sentinel"][0] == "OK" and checks["workers"][0] == "OK", out
    assert checks["events"][0] == "OK", out


def test_check_fails_in_one_line_when_no_sentinel_answers(sentinel_env) -> None:
    dead = free_port()
    env = {**sentinel_env, "CELERY_BROKER_URL": f"sentinel://:s3cret@127.0.0.1:{dead}/{DB}"}
    code, out, err = run_check(env, "--timeout", "3")
    assert code == 2, out + err
    status, detail = lines_by_name(out)["sentinel"]
    assert status == "FAIL"
    assert "no sentinel answered" in detail and f"127.0.0.1:{dead}" in detail
    assert "s3cret" not in out + err
    assert "Traceback" not in err


def test_check_fails_in_one_line_for_an_unknown_master_name(sentinel_env) -> None:
    code, out, err = run_check({**sentinel_env, "AFIRGEN_SENTINEL_MASTER_NAME": "nope"})
    assert code == 2, out + err
    status, detail = lines_by_name(out)["sentinel"]
    assert status == "FAIL"
    assert "know no master named 'nope' (they monitor: mymaster)" in detail


def test_a_sentinel_broker_without_a_master_name_is_a_config_error(sentinel_env) -> None:
    env = {k: v for k, v in sentinel_env.items() if k != "AFIRGEN_SENTINEL_MASTER_NAME"}
    code, out, err = run_check(env)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert (
        "CELERY_BROKER_URL is a sentinel:// URL but AFIRGEN_SENTINEL_MASTER_NAME is not set"
        in lines[0]
    )
    worker = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "afirgen_tasks.celery_app", "worker", "--help"],
        cwd=REPO_ROOT,
        env=worker_environ(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 2 and "AFIRGEN_SENTINEL_MASTER_NAME is not set" in worker.stderr


# ---- failover ---------------------------------------------------------------------------


@pytest.fixture
def failover_cluster() -> Iterator[SentinelCluster]:
    started = _start(replica=True)
    try:
        yield started
    finally:
        started.stop()


def test_a_worker_follows_a_sentinel_failover(
    afirgen_env, failover_cluster, worker_factory, monkeypatch
) -> None:
    cluster = failover_cluster
    env = {**afirgen_env, **cluster.env(DB)}
    for name, value in cluster.env(DB).items():
        monkeypatch.setenv(name, value)
    app = create_app(load_settings())
    try:
        worker = worker_factory(queues=("cleanup",), env=env, app=app)
        first = app.send_task(CLEANUP, kwargs={"max_age_hours": 1}, queue="cleanup", priority=1)
        assert first.get(timeout=30)["status"] == "ok"

        # The master dies; the sentinel sees it down after DOWN_AFTER_MS and promotes the
        # replica.  (SENTINEL FAILOVER would leave the old master writable for ~10 s more,
        # until the sentinel reconfigures it: writes made there meanwhile are lost.)
        cluster.master.kill()
        wait_until(
            lambda: _master_port(cluster) == cluster.replica.port,
            timeout=20,
            message=lambda: "no failover:\n" + cluster.describe(),
        )
        started = time.monotonic()
        # Published to the new master (the app's connection fails over through the sentinel,
        # on our transport); the worker reconnects the same way.
        second = app.send_task(CLEANUP, kwargs={"max_age_hours": 1}, queue="cleanup", priority=1)
        assert second.get(timeout=30)["status"] == "ok", worker.log_tail()
        print(f"\nafter the failover the next job ran in {time.monotonic() - started:.1f} s")
        new_master = redis.Redis("127.0.0.1", cluster.replica.port, db=DB)
        try:
            assert new_master.exists(f"celery-task-meta-{second.id}")
            # Still the atomic fetch after the reconnect: only our consumer takes the wake-up
            # tokens our publisher pushed (kombu's BRPOP would leave them to expire in 60 s).
            wait_until(
                lambda: not new_master.exists(WAKEUP_PREFIX + "cleanup"),
                timeout=10,
                message="the reconnected worker does not consume wake-up tokens (stock transport?)",
            )
        finally:
            new_master.close()
        log = worker.log_text()
        assert "atomic fetch OFF" not in log
        assert log.count("atomic fetch on (afirgen_tasks.redis_transport:SentinelTransport)") >= 1
    finally:
        app.close()


def _master_port(cluster: SentinelCluster) -> int | None:
    try:
        return cluster.master_address()[1]
    except (redis.RedisError, TypeError):
        return None
