"""A TLS broker (rediss://) with a private CA from the [tls] settings: worker, console and --check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
import redis

from afirgen_tasks.factory import create_app
from afirgen_tasks.settings import load_settings
from tests.support.redis_server import free_port
from tui.sources.cluster import BrokerSources
from tui.ui.app import AfirgenApp

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (shutil.which("redis-server") and shutil.which("openssl")),
        reason="needs redis-server (built with TLS) and openssl on PATH",
    ),
]


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def tls_redis(tmp_path):
    """A redis-server answering only TLS, with a certificate from a throwaway CA."""
    d = tmp_path / "tls"
    d.mkdir()
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=afirgen-test-ca",
        cwd=d,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=d,
    )
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext",
        cwd=d,
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.crt",
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        cwd=d,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.skip("this redis-server was built without TLS support")
        try:
            if redis.Redis(
                port=port, ssl=True, ssl_ca_certs=str(d / "ca.crt"), socket_timeout=0.5
            ).ping():
                break
        except (redis.exceptions.RedisError, OSError):
            time.sleep(0.05)
    yield port, d / "ca.crt"
    proc.terminate()
    proc.wait(5)


async def test_tls_broker_worker_console_and_check(
    tls_redis, afirgen_env, monkeypatch, worker_factory
):
    port, ca = tls_redis
    url = f"rediss://127.0.0.1:{port}/0"
    env = {
        **afirgen_env,
        "CELERY_BROKER_URL": url,
        "CELERY_RESULT_BACKEND": url,
        "AFIRGEN_TLS_CA_CERTS": str(ca),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(
        None,
        console_refresh_interval=0.1,
        console_queue_poll_interval=0.3,
        console_inspect_interval=1.0,
    )
    celery_app = create_app(settings, main="tls")
    worker = worker_factory(
        queues=("default", "email", "reports", "analytics", "cleanup"), env=env, app=celery_app
    )
    result = celery_app.send_task("afirgen_tasks.cleanup.cleanup_temp_files", priority=6)
    assert result.get(timeout=30)["status"] == "ok"

    app = AfirgenApp(settings, BrokerSources(settings, celery_app), celery_app=celery_app)
    async with app.run_test(size=(100, 30)) as pilot:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (
            app.console_screen.connection_state()[0] == "● connected"
            and app.query_one("#workers").has_key(worker.hostname)
            and app.console_screen.last_poll is not None
            and not app.console_screen.last_poll.error
        ):
            await pilot.pause(0.1)
        assert app.console_screen.connection_state()[0] == "● connected"
        assert app.query_one("#workers").has_key(worker.hostname)

    check = subprocess.run(
        [sys.executable, "-m", "tui", "--check", "--timeout", "5"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=30,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # without the CA the certificate is refused: the check says it could not connect
    env_no_ca = {**os.environ, **env, "AFIRGEN_TLS_CA_CERTS": ""}
    refused = subprocess.run(
        [sys.executable, "-m", "tui", "--check", "--timeout", "3"],
        capture_output=True,
        text=True,
        env=env_no_ca,
        timeout=30,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    celery_app.close()
