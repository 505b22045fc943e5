"""The event reader process (tui/sources/event_process.py) on a real, private redis-server.

What it must do besides reading (test_redis_events.py and test_event_boundary.py cover the
flood, the Redis restart, Redis cutting it off and forged events): be restarted when it is
killed, stop within a second, never outlive its console (even one killed with SIGKILL),
never hold the terminal, start cleanly from a process whose threads hold locks and from
inside a running Textual app, and be subscribed before the console acts on the cluster.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.restartable_redis import RestartableRedis
from tests.support.waiting import wait_until
from tui.sources.event_process import ProcessEventReceiver
from tui.sources.events import CONNECTED, RECONNECTING

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]
ROOT = Path(__file__).resolve().parents[2]
PATTERN = "/0.celeryev/*"  # kombu's fanout channels of db 0's event exchange


@pytest.fixture
def own_redis() -> Iterator[RestartableRedis]:
    server = RestartableRedis()
    server.start()
    yield server
    server.cleanup()


def flood(url: str, rate: int, seconds: float, group: int = 24) -> int:
    """Publish Celery events at ``rate`` for ``seconds``, up to ``group`` of a worker's in
    one message; how many events were published."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.flood", "--url", url, "--rate", str(rate)]
        + ["--seconds", str(seconds), "--workers", "5", "--group", str(group)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return int(json.loads(out.stdout)["published"])


def gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped yet counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def reader(url: str, **kwargs) -> ProcessEventReceiver:
    return ProcessEventReceiver(None, 100_000, url=url, pattern=PATTERN, **kwargs)


def test_a_killed_reader_process_is_started_again_and_the_console_resyncs(own_redis):
    url = own_redis.url(0)
    receiver = reader(url)
    receiver.start()
    try:
        wait_until(lambda: receiver.status.state == CONNECTED, 20, message="connected")
        first_pid = receiver.pid
        assert first_pid is not None and receiver.status.connects == 1
        published = flood(url, 2000, 0.5)
        wait_until(lambda: receiver.received >= published, 20, message="first events")

        os.kill(first_pid, signal.SIGKILL)
        wait_until(lambda: receiver.status.state == RECONNECTING, 10, message="reconnecting")
        assert "killed by signal 9" in receiver.status.error
        assert receiver.status.next_attempt_at is not None

        # a new process, and connects grows: that is what makes the console resync
        wait_until(
            lambda: receiver.status.state == CONNECTED and receiver.status.connects == 2,
            20,
            message=lambda: f"connected again: {receiver.status}",
        )
        assert receiver.pid not in (None, first_pid) and receiver.starts == 2
        assert gone(first_pid)
        more = flood(url, 2000, 0.5)
        # the counters carry over from the killed process
        wait_until(lambda: receiver.received >= published + more, 20, message="events again")
        assert receiver.invalid == 0
    finally:
        receiver.stop()


def test_messages_the_socket_thread_cannot_keep_are_counted_as_dropped(own_redis):
    """Past its byte limit the socket thread drops messages undecoded: each counts as one
    event received (taken off the wire) and dropped, as a full buffer does in the other
    receivers, so nothing goes missing uncounted."""
    url = own_redis.url(0)
    receiver = reader(url, raw_limit=1)  # no message fits
    receiver.start()
    try:
        wait_until(lambda: receiver.status.state == CONNECTED, 20, message="connected")
        # one event a message: a message dropped undecoded counts as one event
        published = flood(url, 2000, 0.5, group=1)
        wait_until(
            lambda: receiver.received >= published,
            20,
            message=lambda: f"{receiver.received} of {published}",
        )
        assert receiver.received == receiver.dropped == published
        assert not receiver.buffered and receiver.invalid == 0
        assert receiver.status.connects == 1  # no cut: the socket was read all along
    finally:
        receiver.stop()


def test_the_reader_process_stops_within_a_second_and_never_holds_the_terminal(
    own_redis, monkeypatch
):
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://:s3cret@127.0.0.1:1/0")
    monkeypatch.setenv("AFIRGEN_HISTORY_DB", "postgresql://u:s3cret@db/x")
    receiver = reader(own_redis.url(0))
    receiver.start()
    try:
        wait_until(lambda: receiver.status.state == CONNECTED, 20, message="connected")
        pid = receiver.pid
        assert pid is not None
        # stdin, stdout and stderr are /dev/null: it cannot write over the console's screen
        for fd in (0, 1, 2):
            assert os.readlink(f"/proc/{pid}/fd/{fd}") == os.devnull
        # the broker URL (it may hold a password) is not on its command line, nor in its
        # environment (its configuration comes through the pipe)
        assert not any("redis://" in arg for arg in psutil.Process(pid).cmdline())
        environ = psutil.Process(pid).environ()
        assert not [k for k in environ if k.startswith(("CELERY_", "AFIRGEN_"))], environ
        # -P: the directory the console was started in is not on its sys.path
        assert "-P" in psutil.Process(pid).cmdline()
    finally:
        started = time.monotonic()
        receiver.stop()
        took = time.monotonic() - started
    assert took < 1.0, took
    assert not receiver.is_alive() and receiver.status.state == "stopped"
    assert gone(pid)


def test_the_reader_process_does_not_outlive_a_console_killed_with_sigkill(own_redis):
    script = (
        "import sys, time\n"
        "from tui.sources.event_process import ProcessEventReceiver\n"
        f"r = ProcessEventReceiver(None, 1000, url=sys.argv[1], pattern={PATTERN!r})\n"
        "r.start()\n"
        "while r.status.state != 'connected': time.sleep(0.01)\n"
        "print(r.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    console = subprocess.Popen(
        [sys.executable, "-c", script, own_redis.url(0)], cwd=ROOT, stdout=subprocess.PIPE
    )
    try:
        assert console.stdout is not None
        line = console.stdout.readline()
        child = int(line)
        assert not gone(child)
        console.kill()
        console.wait(10)
        wait_until(lambda: gone(child), 5, message="the reader process ended with its console")
    finally:
        console.kill()
        console.wait(10)


def test_readers_start_cleanly_from_a_process_whose_threads_hold_locks(own_redis):
    """Forking a process whose other threads hold locks can copy a held lock into the child
    (that is how the forked reader hung in CI).  Here busy threads hold an ordinary lock,
    logging's locks and the import machinery's while readers are started and stopped many
    times: each must connect, and each must be gone after stop()."""
    stop = threading.Event()
    held = threading.Lock()
    log = logging.getLogger("afirgen.test.busy")
    log.addHandler(logging.NullHandler())
    log.propagate = False

    def hold_a_lock() -> None:
        while not stop.is_set():
            with held:
                time.sleep(0.001)

    def log_a_lot() -> None:
        while not stop.is_set():
            log.warning("busy %s", "x" * 100)

    def import_a_lot() -> None:
        import importlib

        while not stop.is_set():
            importlib.invalidate_caches()
            importlib.import_module("json.decoder")
            sum(range(1000))

    busy = [
        threading.Thread(target=fn, daemon=True)
        for fn in (hold_a_lock, hold_a_lock, log_a_lot, log_a_lot, import_a_lot)
    ]
    for thread in busy:
        thread.start()
    url = own_redis.url(0)
    pids = []
    try:
        for _ in range(12):
            receiver = reader(url)
            receiver.start()
            try:
                wait_until(
                    lambda r=receiver: r.status.state == CONNECTED,
                    20,
                    message=lambda r=receiver: f"connected: {r.status}",
                )
                pids.append(receiver.pid)
            finally:
                receiver.stop()
    finally:
        stop.set()
        for thread in busy:
            thread.join(5)
    assert len(pids) == 12 and all(gone(pid) for pid in pids)


async def test_the_reader_process_starts_inside_a_running_textual_app(own_redis):
    from textual.app import App

    url = own_redis.url(0)
    app: App[None] = App()
    async with app.run_test() as pilot:
        # what broke multiprocessing's spawn: Textual's stand-in for sys.stderr has no fd
        assert sys.stderr.fileno() == -1
        receiver = reader(url)
        receiver.start()
        try:
            deadline = time.monotonic() + 20
            while receiver.status.state != CONNECTED:
                assert time.monotonic() < deadline, receiver.status
                await pilot.pause(0.05)
            published = flood(url, 1000, 0.3)
            while receiver.received < published:
                assert time.monotonic() < deadline + 20, receiver.received
                await pilot.pause(0.05)
        finally:
            receiver.stop()
    assert receiver.status.state == "stopped"


def test_wait_connected_returns_once_the_subscription_is_live(own_redis):
    """What the console's first inspect and enable_events wait for: once it returns True,
    an event published at once is received (nothing published after the wait is lost)."""
    url = own_redis.url(0)
    receiver = reader(url)
    assert receiver.wait_connected(5) is False  # not started: no wait at all
    receiver.start()
    try:
        assert receiver.wait_connected(20) is True
        published = flood(url, 200, 0.05)
        assert published > 0
        wait_until(lambda: receiver.received == published, 10, message="the events sent at once")
    finally:
        receiver.stop()


def test_wait_connected_ends_when_the_broker_does_not_answer():
    receiver = reader("redis://127.0.0.1:1/0")  # nothing listens on port 1
    receiver.start()
    try:
        started = time.monotonic()
        assert receiver.wait_connected(20) is False
        assert time.monotonic() - started < 15
        assert receiver.status.state == RECONNECTING and receiver.status.error
    finally:
        receiver.stop()


def test_the_console_s_first_inspect_waits_for_the_subscription(afirgen_settings, afirgen_app):
    """The console resyncs (inspect) and switches task events on (enable_events) right after
    start: both wait until the reader process is subscribed, so the events that follow
    them are not published into the start-up window."""
    from tui.sources.cluster import BrokerSources

    settings = afirgen_settings.model_copy(update={"console_control_timeout": 0.001})
    sources = BrokerSources(settings, afirgen_app)
    assert isinstance(sources.events, ProcessEventReceiver)  # the default on Redis: auto
    sources.start()
    try:
        assert sources.status.state != CONNECTED  # a fresh interpreter is still starting
        sources.inspect(None, tasks=False)
        assert sources.status.state == CONNECTED
        sources.enable_events([])
        assert sources.status.state == CONNECTED and sources.status.connects == 1
    finally:
        sources.stop()


def test_a_module_in_the_console_s_working_directory_does_not_run_in_the_reader(
    own_redis, tmp_path, monkeypatch
):
    """With ``-m`` Python puts the current directory first on sys.path: a json.py there
    would run inside the reader, whose batches the console unpickles (attacker review)."""
    marker = tmp_path / "HIJACKED"
    (tmp_path / "json.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nraise SystemExit(3)\n"
    )
    monkeypatch.chdir(tmp_path)
    receiver = reader(own_redis.url(0))
    receiver.start()
    try:
        wait_until(lambda: receiver.status.state == CONNECTED, 20, message="connected")
    finally:
        receiver.stop()
    assert not marker.exists()


def test_the_console_unpickles_only_plain_data_and_the_reader_status():
    import pickle

    from tui.sources.event_process import plain_data
    from tui.sources.readout import ReceiverStatus

    status = ReceiverStatus(CONNECTED, 1.0, None, "", 0, 1)
    message = (
        [{"type": "task-sent", "uuid": "u", "x": [1, 2.5, None]}],
        1,
        0,
        (0, 0),
        None,
        status,
    )
    assert plain_data(pickle.dumps(message)) == message

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    for hostile in (Evil(), [Path("/etc/passwd")], {"e": threading.Lock}):
        try:
            data = pickle.dumps(hostile)
        except Exception:  # noqa: BLE001 - not picklable at all: nothing to refuse
            continue
        with pytest.raises(pickle.UnpicklingError):
            plain_data(data)


def test_while_the_broker_is_away_the_next_attempt_time_moves_on(own_redis):
    """Operator review: with the reader process, "retry in 0s" stayed for 20 s while Redis
    was down: the console only took the child's status when its state changed."""
    receiver = reader(own_redis.url(0))
    receiver.start()
    try:
        wait_until(lambda: receiver.status.state == CONNECTED, 20, message="connected")
        own_redis.stop()
        wait_until(lambda: receiver.status.state == RECONNECTING, 20, message="reconnecting")
        first = receiver.status.next_attempt_at
        assert first is not None
        wait_until(
            lambda: (receiver.status.next_attempt_at or 0) > first,
            30,
            message="a later attempt's time",
        )
        assert receiver.status.state == RECONNECTING
    finally:
        receiver.stop()


def test_a_message_of_many_events_reaches_the_console_in_frames_of_at_most_a_batch(own_redis):
    """One message may carry up to MAX_EVENTS_PER_MESSAGE events; the console's UI thread
    unpickles a frame at once, so the reader splits them, in order, into frames of at most
    BATCH_EVENTS; a frame that cannot be unpickled is counted as dropped, never raised."""
    import base64

    import redis

    from tui.sources.event_process import BATCH_EVENTS

    url = own_redis.url(0)
    receiver = reader(url)
    receiver.start()
    try:
        wait_until(lambda: receiver.status.state == CONNECTED, 20, message="connected")
        n = BATCH_EVENTS * 2 + 500
        body = [
            {"type": "task-sent", "uuid": f"u{i:05d}", "hostname": "w@h", "timestamp": 1.0e9 + i}
            for i in range(n)
        ]
        env = {
            "body": base64.b64encode(json.dumps(body).encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"hostname": "w@h"},
            "properties": {"body_encoding": "base64", "delivery_tag": "x", "delivery_info": {}},
        }
        redis.Redis.from_url(url).publish("/0.celeryev/task.multi", json.dumps(env))
        wait_until(
            lambda: receiver.buffered >= n,
            20,
            message=lambda: f"{receiver.buffered} {receiver.received} {receiver.tally.reasons}",
        )
        sizes = [size for size, _data in receiver._raw]
        assert sum(sizes) == n and max(sizes) <= BATCH_EVENTS and len(sizes) >= 3
        receiver._raw.append((7, b"not a pickle"))  # a corrupt frame behind them
        receiver._raw_in += 7
        got = receiver.drain(10 * n)
        assert [e["uuid"] for e in got] == [f"u{i:05d}" for i in range(n)]
        assert receiver.buffered == 0 and receiver.dropped == 7
        assert receiver.invalid == 0
    finally:
        receiver.stop()
