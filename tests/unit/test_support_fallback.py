"""The test infrastructure itself: the Redis fallback chain, db allocation, worker control."""

from __future__ import annotations

import signal
import socket

import pytest

from tests.support.redis_server import LOCK_KEY, TEST_DBS, DbAllocator, RedisUnavailable, find_redis
from tests.support.waiting import wait_until


def test_wait_until_returns_value_and_times_out_with_message():
    assert wait_until(lambda: 42, timeout=0.1) == 42
    with pytest.raises(AssertionError, match=r"never true \(waited 0.1 s\)"):
        wait_until(lambda: False, timeout=0.1, interval=0.01, message=lambda: "never true")


def test_unknown_forced_kind_is_rejected():
    with pytest.raises(RedisUnavailable, match="not one of env, spawned, fakeredis"):
        find_redis(force="memcached")


def test_env_kind_needs_the_variable(monkeypatch):
    monkeypatch.delenv("AFIRGEN_TEST_REDIS_URL", raising=False)
    with pytest.raises(RedisUnavailable, match="AFIRGEN_TEST_REDIS_URL is not set"):
        find_redis(force="env")


def test_a_redis_already_running_is_not_taken_unless_named(monkeypatch):
    """A server someone else runs (127.0.0.1:6379 here) may hold their data: never used unasked."""
    monkeypatch.delenv("AFIRGEN_TEST_REDIS_URL", raising=False)
    monkeypatch.delenv("AFIRGEN_TEST_FORCE_FALLBACK", raising=False)
    server = find_redis()
    try:
        assert server.kind in {"spawned", "fakeredis"}
        assert server.port != 6379
        assert "skipped env: AFIRGEN_TEST_REDIS_URL is not set" in server.detail
    finally:
        server.stop()


def test_session_server_answers_and_is_reported(redis_server):
    assert redis_server.kind in {"env", "spawned", "fakeredis"}
    client = redis_server.client(TEST_DBS[0])
    try:
        assert client.ping()
    finally:
        client.close()
    assert redis_server.url(7).endswith(f":{redis_server.port}/7")
    assert f"kind={redis_server.kind}" in redis_server.describe()


def test_fakeredis_tcp_server_runs_lua_and_blocking_pops():
    """The last fallback must support what kombu's Redis transport uses."""
    server = find_redis(force="fakeredis")
    try:
        client = server.client(3)
        client.lpush("q", "a")
        assert client.brpop(["q:1", "q"], timeout=1) == (b"q", b"a")
        assert client.eval("return redis.call('incrby', KEYS[1], ARGV[1])", 1, "n", 5) == 5
        pubsub = client.pubsub()
        pubsub.subscribe("/3.celery.pidbox")
        wait_until(
            lambda: pubsub.get_message(timeout=0.1), timeout=2, message="no subscribe confirmation"
        )
        client.publish("/3.celery.pidbox", "hello")
        msg = wait_until(
            lambda: pubsub.get_message(timeout=0.1), timeout=2, message="no pub/sub message"
        )
        assert msg["data"] == b"hello"
        pubsub.close()
        # An error reply must not close the connection (EVALSHA -> NOSCRIPT -> SCRIPT LOAD).
        with pytest.raises(Exception, match="No matching script"):
            client.evalsha("0" * 40, 0)
        assert client.ping()
        assert client.register_script("return 7")() == 7
        client.close()
    finally:
        server.stop()


def test_fakeredis_blocked_pop_of_a_dead_client_takes_nothing():
    """A worker killed during BRPOP must not swallow the next message (real Redis doesn't)."""
    server = find_redis(force="fakeredis")
    try:
        ghost = socket.create_connection((server.host, server.port))
        ghost.sendall(
            b"*2\r\n$6\r\nSELECT\r\n$1\r\n4\r\n*3\r\n$5\r\nBRPOP\r\n$1\r\nq\r\n$1\r\n5\r\n"
        )
        wait_until(lambda: ghost.recv(5), timeout=2, message="no reply to SELECT")
        ghost.close()  # the worker dies while (or just before) its BRPOP blocks
        client = server.client(4)
        client.lpush("q", "message")
        assert client.brpop(["q"], timeout=3) == (b"q", b"message")
        client.close()
    finally:
        server.stop()


def test_spawned_redis_server_is_killed_on_stop():
    try:
        server = find_redis(force="spawned")
    except RedisUnavailable as exc:
        pytest.skip(str(exc))
    client = server.client(2)
    assert client.ping()
    client.close()
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=0.5).close()


def test_db_allocation_is_exclusive_and_flushes(redis_server, redis_db):
    """Two allocators (think: two pytest processes) never get the same db."""
    other = DbAllocator(redis_server)
    taken = other.acquire()
    try:
        assert taken != redis_db
        client = redis_server.client(taken)
        assert client.get(LOCK_KEY) is not None
        client.set("leftover", 1)
        client.close()
    finally:
        other.release(taken)
    client = redis_server.client(taken)
    assert client.dbsize() == 0
    client.close()


@pytest.mark.integration
def test_worker_runs_a_task_reports_pool_and_stops(afirgen_app, worker_factory):
    worker = worker_factory(queues=("default",), concurrency=2)
    assert len(worker.pool_pids()) == 2
    result = afirgen_app.send_task("celery.accumulate", args=(1, 2), queue="default")
    assert result.get(timeout=15) == [1, 2]
    stats = worker.inspect().stats()
    assert stats[worker.hostname]["pool"]["max-concurrency"] == 2
    assert worker.stop() == 0
    assert not worker.is_alive()
    assert worker.pool_pids() == []


@pytest.mark.integration
def test_worker_kill_and_restart(worker_factory):
    worker = worker_factory(queues=("cleanup",), pool="solo")
    first_pid = worker.pid
    worker.kill(signal.SIGKILL)
    wait_until(lambda: not worker.is_alive(), timeout=5, message="worker survived SIGKILL")
    worker.restart()
    assert worker.pid != first_pid and worker.ping()
    assert worker.log_text().count("===== start #") == 2
