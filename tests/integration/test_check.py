"""``afirgen-tui --check`` end to end: a real Redis, real ``celery worker`` subprocesses, and
the check itself run as a subprocess (no TTY), one test per exit-code path."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping

import pytest
import redis
from kombu import Exchange, Queue

from tests.support.waiting import wait_until
from tests.support.workers import REPO_ROOT, worker_environ

pytestmark = pytest.mark.integration

ALL_QUEUES = ("default", "email", "reports", "analytics", "cleanup")


def run_check(
    env: Mapping[str, str], *args: str, timeout: float = 60
) -> tuple[int, str, str, float]:
    """Run ``python -m tui --check *args``; return (exit code, stdout, stderr, wall seconds)."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tui", "--check", *args],
        cwd=REPO_ROOT,
        env=worker_environ(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


def lines_by_name(stdout: str) -> dict[str, tuple[str, str]]:
    """``{name: (status, detail)}`` from the check's text output."""
    out = {}
    for line in stdout.splitlines():
        status, name, detail = (line.split(None, 2) + ["", ""])[:3]
        out[name] = (status, detail)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def publish_unconsumed(app, queue_name: str, n: int) -> None:
    """Publish ``n`` messages into a queue bound on the broker that no worker consumes."""
    exchange = Exchange(queue_name, type="direct")
    queue = Queue(queue_name, exchange, routing_key=queue_name)
    with app.producer_or_acquire() as producer:
        for i in range(n):
            producer.publish(
                {"n": i},
                exchange=exchange,
                routing_key=queue_name,
                declare=[queue],
                serializer="json",
            )


# ---- exit 1 ----------------------------------------------------------------------------


def test_no_workers_fails(afirgen_env):
    code, out, err, wall = run_check(afirgen_env)
    checks = lines_by_name(out)
    assert code == 1, out + err
    assert checks["workers"][0] == "FAIL"
    assert checks["queues"][0] == "FAIL"
    assert checks["broker"][0] == "OK" and checks["backend"][0] == "OK"
    assert wall < 5  # bound by the short no-worker grace, not the 5 s budget


def test_worker_on_some_queues_names_the_unconsumed(afirgen_env, worker_factory):
    worker_factory(queues=("default", "email"))
    code, out, err, _ = run_check(afirgen_env)
    checks = lines_by_name(out)
    assert code == 1, out + err
    assert checks["workers"][0] == "OK"
    status, detail = checks["queues"]
    assert status == "FAIL"
    assert detail.endswith("reports, analytics, cleanup")
    assert "default" not in detail and "email" not in detail


def test_a_paused_queue_is_said_to_be_paused_not_unconsumed(
    afirgen_env, afirgen_app, worker_factory
):
    """Operator review: a deliberately paused queue read as a FAIL "no consumer"."""
    from tui.core.pauses import PauseRecord
    from tui.sources.pause_records import PauseRecordStore

    worker_factory(queues=("default", "email", "analytics", "cleanup"))
    store = PauseRecordStore.for_app(afirgen_app)
    store.put(PauseRecord("reports", ("w9@gone",), time.time() - 600, "alice"))
    code, out, err, _ = run_check(afirgen_env)
    status, detail = lines_by_name(out)["queues"]
    assert status == "WARN", out + err
    assert detail.startswith("paused on purpose: reports (by alice, 10 min ago)"), detail
    assert code == 0, out + err  # a warning only (exit 1 with --strict)
    # --strict: the warning fails the check
    (code2, out2, _err2, _) = run_check(afirgen_env, "--strict")
    assert code2 == 1 and lines_by_name(out2)["queues"][0] == "WARN"


def test_an_unpaused_queue_with_no_consumer_still_fails_beside_a_paused_one(
    afirgen_app, afirgen_settings
):
    from tui.check import FAIL, CheckResult, _with_pauses
    from tui.core.pauses import PauseRecord
    from tui.sources.pause_records import PauseRecordStore

    PauseRecordStore.for_app(afirgen_app).put(PauseRecord("reports", ("w1@h",), time.time(), "bob"))
    value = {"default": 1, "reports": 0, "cleanup": 0}
    failed = CheckResult("queues", FAIL, "no consumer on 2 queue(s): reports, cleanup", value, 1)
    result = _with_pauses(failed, afirgen_app, afirgen_settings)
    assert result.status == FAIL
    assert result.detail.startswith(
        "no consumer on 1 queue(s): cleanup; paused on purpose: reports (by bob"
    )


# ---- exit 0 and the JSON document ------------------------------------------------------


def test_healthy_cluster_exits_0_fast_with_full_json(afirgen_env, worker_factory):
    worker = worker_factory(queues=ALL_QUEUES, concurrency=2)
    env = {**afirgen_env, "AFIRGEN_CHECK_BUSY_SECONDS": "30"}
    code, out, err, wall = run_check(env, "--json", "--timeout", "20")
    assert code == 0, out + err
    doc = json.loads(out)
    assert set(doc) >= {"status", "exit_code", "elapsed", "broker", "checks"}
    assert doc["status"] == "OK" and doc["exit_code"] == 0
    assert isinstance(doc["elapsed"], float) and isinstance(doc["broker"], str)
    # returns once the known worker answered, far inside the 20 s budget
    assert doc["elapsed"] < 5 and wall < 8
    names = [c["name"] for c in doc["checks"]]
    assert names[:6] == ["settings", "broker", "backend", "workers", "queues", "backlog[default]"]
    assert names[-2:] == ["busy", "events"]
    for check in doc["checks"]:
        assert set(check) == {"name", "status", "detail", "value", "threshold"}
        assert check["status"] in {"OK", "WARN", "FAIL"}
        assert isinstance(check["name"], str) and isinstance(check["detail"], str)
    by_name = {c["name"]: c for c in doc["checks"]}
    assert by_name["workers"]["value"] == 1 and worker.hostname in by_name["workers"]["detail"]
    assert by_name["events"]["status"] == "OK"
    assert by_name["busy"]["status"] == "OK" and by_name["busy"]["threshold"] == 30
    assert by_name["backlog[email]"]["threshold"] == {"warn": 1000, "fail": 10000}

    code, out, err, _ = run_check(afirgen_env)
    assert code == 0, out + err
    assert out.splitlines()[-1].startswith("OK")


def test_backlog_warn_then_fail_and_strict(afirgen_env, afirgen_app, worker_factory):
    worker_factory(queues=ALL_QUEUES)
    env = {
        **afirgen_env,
        "AFIRGEN_CHECK_QUEUE_BACKLOG_WARN": json.dumps({"overflow": 2}),
        "AFIRGEN_CHECK_QUEUE_BACKLOG_FAIL": json.dumps({"overflow": 4}),
    }
    publish_unconsumed(afirgen_app, "overflow", 3)
    code, out, err, _ = run_check(env)
    checks = lines_by_name(out)
    assert checks["backlog[overflow]"][0] == "WARN", out
    assert checks["backlog[overflow]"][1].startswith("3 waiting")
    assert code == 0, out + err
    code, out, err, _ = run_check(env, "--strict")
    assert code == 1, out + err

    publish_unconsumed(afirgen_app, "overflow", 2)
    code, out, err, _ = run_check(env)
    checks = lines_by_name(out)
    assert checks["backlog[overflow]"][0] == "FAIL"
    assert code == 1, out + err


# ---- exit 2 ----------------------------------------------------------------------------


def test_closed_port_exits_2_fast(afirgen_env):
    code, out, err, wall = run_check(afirgen_env, "--broker", f"redis://127.0.0.1:{free_port()}/0")
    assert code == 2, out + err
    assert lines_by_name(out)["broker"][0] == "FAIL"
    assert wall < 4


def test_unroutable_address_is_bounded_by_timeout(afirgen_env):
    # 10.255.255.1 is only ever a connect target here; nothing is sent if it answers nothing
    code, out, err, wall = run_check(
        afirgen_env, "--broker", "redis://10.255.255.1:6379/0", "--timeout", "1"
    )
    assert code == 2, out + err
    assert wall < 1 + 1 + 0.5  # timeout + 1 s (+ interpreter start-up)


def test_bad_settings_exit_2_with_one_line(afirgen_env):
    env = {**afirgen_env, "AFIRGEN_CHECK_MIN_WORKERS": "-1"}
    code, out, err, _ = run_check(env)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "AFIRGEN_CHECK_MIN_WORKERS" in lines[0]


# ---- no Textual, no leaks ---------------------------------------------------------------


def test_check_never_imports_textual(afirgen_env):
    code = (
        "import sys\n"
        "from tui.cli import main\n"
        "rc = main(['--check', '--timeout', '2'])\n"
        "assert 'textual' not in sys.modules, 'textual was imported'\n"
        "assert not any(m.startswith('textual.') for m in sys.modules)\n"
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
    assert "RC 1" in proc.stdout  # no workers in this test


@pytest.fixture
def password_redis(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not on PATH: cannot start a password-protected Redis")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--requirepass",
            "s3cret",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, password="s3cret", socket_timeout=1)

    def ready() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    try:
        wait_until(ready, timeout=10, message="password redis-server did not start")
        yield port
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


def test_password_never_printed(afirgen_env, password_redis):
    url = f"redis://:s3cret@127.0.0.1:{password_redis}/0"
    env = {**afirgen_env, "CELERY_RESULT_BACKEND": url}
    for args, expected in (
        (("--broker", url), 1),  # reachable, no workers
        (("--broker", url, "--json"), 1),
        (("--broker", url.replace("s3cret", "wr0ngpw")), 2),  # AUTH refused
        (("--broker", url.replace("s3cret", "wr0ngpw"), "--json"), 2),
    ):
        code, out, err, _ = run_check(env, *args)
        assert code == expected, (args, out, err)
        for secret in ("s3cret", "wr0ngpw"):
            assert secret not in out and secret not in err, (args, out, err)
        assert ":***@" in out


def test_a_dead_workers_stale_binding_does_not_hide_the_live_ones(
    afirgen_env, worker_factory, redis_client
):
    """A SIGKILLed worker leaves its pidbox binding: the live worker's answers still count."""
    worker = worker_factory(queues=ALL_QUEUES)
    redis_client.sadd("_kombu.binding.celery.pidbox", "::ghost@nowhere.celery.pidbox")
    for timeout in ("3", "6"):
        code, out, err, wall = run_check(afirgen_env, "--json", "--timeout", timeout)
        doc = json.loads(out)
        by_name = {c["name"]: c for c in doc["checks"]}
        assert by_name["workers"]["value"] == 1, (timeout, by_name["workers"])
        assert worker.hostname in by_name["workers"]["detail"]
        assert "ghost@nowhere" in by_name["workers"]["detail"]  # named as silent
        assert by_name["queues"]["status"] == "OK", by_name["queues"]
        assert code == 0, out + err  # a warning, not a failure, without --strict
        assert wall < float(timeout) + 3


# ---- issue 12, item 10: a budget too short to ask never passes ----------------------------


def test_a_timeout_too_short_to_ask_exits_2_not_0(afirgen_env, worker_factory):
    worker_factory(queues=ALL_QUEUES)  # a healthy cluster: only the budget is wrong
    code, out, err, _ = run_check(afirgen_env, "--json", "--timeout", "0.000001")
    assert code == 2, out + err
    doc = json.loads(out)
    assert doc["status"] == "ERROR" and doc["exit_code"] == 2
    cut = [
        c
        for c in doc["checks"]
        if c["detail"].startswith("not checked: --timeout 1e-06 s ran out first")
    ]
    assert cut and all(c["status"] == "FAIL" for c in cut)
    code, out, err, _ = run_check(afirgen_env, "--timeout", "0.000001")
    assert code == 2 and "could not check" in out.splitlines()[-1], out + err


def test_an_empty_broker_is_an_error_not_ignored(afirgen_env):
    for args in (("--check", "--broker", ""), ("--broker", "")):
        proc = subprocess.run(
            [sys.executable, "-m", "tui", *args],
            cwd=REPO_ROOT,
            env=worker_environ(afirgen_env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2 and proc.stdout == "", (args, proc.stdout, proc.stderr)
        [line] = proc.stderr.splitlines()
        assert "--broker" in line and "empty" in line


CRASHING_CONSOLE = """
import sys
import tui.ui.app
from tui.cli import main

_run = tui.ui.app.AfirgenApp.run
tui.ui.app.AfirgenApp.run = lambda self, *a, **k: _run(self, headless=True, size=(100, 30))

def crash(self):
    raise RuntimeError("boom in a handler")

tui.ui.app.AfirgenApp.on_mount = crash
sys.exit(main(sys.argv[1:]))
"""


def test_the_console_exits_1_after_a_crash(afirgen_env, tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(CRASHING_CONSOLE)
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=REPO_ROOT,
        env=worker_environ(afirgen_env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "boom in a handler" in proc.stdout + proc.stderr  # Textual printed the traceback
    assert proc.returncode == 1
