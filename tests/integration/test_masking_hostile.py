"""Passwords holding ``/ @ # ? : %`` and non-ASCII never show (issue 12, item 7).

``urlsplit`` ends the authority at the first ``/`` and a ``#`` starts a fragment, so the
old masker printed such passwords.  The credentials now end at the LAST ``@``.  kombu and
redis-py parse URLs the same first-delimiter way: a raw ``/ ? #`` in a password cannot
connect and is refused at load time; the percent-encoded form connects (proved here with a
redis-server that requires such a password).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from urllib.parse import quote

import pytest
import redis

from afirgen_tasks.settings import load_settings
from tests.integration.test_check import free_port
from tests.support.workers import REPO_ROOT, worker_environ
from tui.actions import Actions, AuditLog
from tui.core.redaction import Redactor
from tui.history.export import export_csv
from tui.sources.cluster import StaticSources
from tui.ui.app import AfirgenApp

pytestmark = pytest.mark.integration

#: raw in the URL: each is accepted by the settings (kombu and redis-py read them right)
RAW_OK = ["p@ss:w0rd", "pä55wörd-ß€", "pct%zz%:x"]
#: raw in the URL they end the host part: refused, masked; percent-encoded they connect
NEED_ENCODING = ["Pa55word/with/slash", "p@ss:w/rd#1", "q?u=1&x#y"]


def run_tui(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tui", *args],
        cwd=REPO_ROOT,
        env=worker_environ(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_hidden(password: str, *texts: str) -> None:
    for text in texts:
        assert password not in text, text
        # nor its pieces that a first-delimiter parser would show as a host, port or path
        for piece in password.replace("#", "/").replace("?", "/").split("/"):
            if len(piece) >= 4:
                assert piece not in text, (piece, text)


@pytest.mark.parametrize("password", RAW_OK + NEED_ENCODING)
@pytest.mark.parametrize("as_json", [False, True])
def test_check_at_a_closed_port_never_prints_the_password(afirgen_env, password, as_json):
    url = f"redis://ops:{password}@127.0.0.1:{free_port()}/0"
    env = {**afirgen_env, "CELERY_RESULT_BACKEND": url}
    proc = run_tui(
        env, "--check", "--broker", url, "--timeout", "2", *(["--json"] if as_json else [])
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert_hidden(password, proc.stdout, proc.stderr)
    if as_json and proc.stdout:
        assert_hidden(password, json.dumps(json.loads(proc.stdout), ensure_ascii=False))
    assert "ops:***@127.0.0.1" in proc.stdout + proc.stderr
    if password in NEED_ENCODING:
        assert "percent-encode" in proc.stderr


@pytest.fixture
def hostile_password_redis(tmp_path):
    """A redis-server whose password holds every delimiter and non-ASCII."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary")
    password = "p@ss:w/rd#1?ä%x"
    port = free_port()
    conf = tmp_path / "redis.conf"
    conf.write_text(
        f'port {port}\nbind 127.0.0.1\nsave ""\nappendonly no\ndir {tmp_path}\n'
        f'requirepass "{password}"\n',
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [binary, str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = redis.Redis(port=port, password=password)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.RedisError:
            if time.monotonic() > deadline or proc.poll() is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail("the redis-server with a hostile password did not start")
            time.sleep(0.05)
    client.close()
    yield port, password
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)


def test_a_percent_encoded_hostile_password_connects_and_never_shows(
    afirgen_env, hostile_password_redis
):
    port, password = hostile_password_redis
    url = f"redis://:{quote(password, safe='')}@127.0.0.1:{port}/0"
    env = {
        **afirgen_env,
        "CELERY_BROKER_URL": url,
        "CELERY_RESULT_BACKEND": url.replace("/0", "/1"),
    }
    for args in (("--check", "--timeout", "3"), ("--check", "--timeout", "3", "--json")):
        proc = run_tui(env, *args)
        # kombu and redis-py decode the password: the broker and the backend answer (no workers: 1)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "broker" in proc.stdout and "unreachable" not in proc.stdout
        assert_hidden(password, proc.stdout, proc.stderr)
        assert quote(password, safe="") not in proc.stdout + proc.stderr
    # a wrong password is refused by the server: the error is scrubbed too
    wrong = url.replace("%25x", "%25y")
    proc = run_tui({**env, "CELERY_BROKER_URL": wrong}, "--check", "--timeout", "3")
    assert proc.returncode == 2
    assert_hidden(password, proc.stdout, proc.stderr)
    assert_hidden(password[:-1] + "y", proc.stdout, proc.stderr)


@pytest.fixture
def hostile_settings(tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text("")
    monkeypatch.setenv("AFIRGEN_CONFIG", str(tmp_path / "config.toml"))
    for name in [n for n in os.environ if n.startswith(("AFIRGEN_", "CELERY_"))]:
        monkeypatch.delenv(name)
    password = "p@ss:w/rd#1?ä%"
    url = f"redis://ops:{quote(password, safe='')}@127.0.0.1:{free_port()}/0"
    settings = load_settings(
        None,
        celery_broker_url=url,
        celery_result_backend=url,
        paths_data_dir=tmp_path / "var",
        console_audit_log=tmp_path / "audit.log",
        paths_report_dir=tmp_path / "exports",
    )
    return settings, password


async def test_status_line_audit_log_and_export_hide_a_hostile_password(hostile_settings, tmp_path):
    settings, password = hostile_settings
    encoded = quote(password, safe="")
    assert password in settings.secrets() and encoded in settings.secrets()
    sources = StaticSources(settings)
    app = AfirgenApp(settings, sources, autostart=False)
    sources.start()
    async with app.run_test(size=(160, 30)) as pilot:
        await pilot.pause()
        status = str(app.query_one("#status").render())
        screen = app.export_screenshot()
    assert "ops:***@127.0.0.1" in status
    for text in (status, screen):
        assert password not in text and encoded not in text

    # the audit log: an error that quotes the URL and the password, as a broker error might
    redactor = Redactor.from_settings(settings)
    audit = AuditLog(
        settings.console_audit_log, scrub=redactor.scrub_secrets, redact_value=redactor.value
    )
    actions = Actions(None, audit)

    def failing_send():
        raise ConnectionError(
            f"Error 111 connecting to {settings.celery_broker_url}; AUTH {password} refused"
        )

    out = actions._attempt(
        "pause_queue", "cleanup", {"note": f"url {settings.celery_broker_url}"}, failing_send
    )
    text = settings.console_audit_log.read_text(encoding="utf-8")
    assert not out.ok and "ops:***@127.0.0.1" in out.message
    for shown in (
        out.message,
        text,
        json.dumps([json.loads(line) for line in text.splitlines()], ensure_ascii=False),
    ):
        assert password not in shown and encoded not in shown

    # an export: a task whose arguments and traceback carry the password
    rows = [
        {
            "uuid": "u1",
            "name": "afirgen_tasks.x",
            "state": "FAILURE",
            "args": repr((settings.celery_broker_url, password)),
            "traceback": f"ConnectionError: AUTH {password} to {settings.celery_broker_url} failed",
        }
    ]
    path = tmp_path / "out.csv"
    export_csv(rows, path, redactor)
    exported = path.read_text(encoding="utf-8")
    assert "afirgen_tasks.x" in exported and password not in exported and encoded not in exported
