"""Which kombu transport and TLS options ``celery_config`` picks for each broker URL."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from kombu import Connection

from afirgen_tasks.factory import REDIS_SENTINEL_TRANSPORT, REDIS_TRANSPORT, celery_config
from afirgen_tasks.redis_transport import SentinelChannel, SentinelTransport, Transport
from afirgen_tasks.settings import load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def config_for(tmp_path, broker: str, **overrides) -> dict:
    settings = load_settings(
        None,
        celery_broker_url=broker,
        celery_result_backend="redis://127.0.0.1:6379/1",
        paths_data_dir=tmp_path,
        **overrides,
    )
    return celery_config(settings)


@pytest.mark.parametrize(
    "broker", ["redis://127.0.0.1:6379/0", "rediss://u:p@cache.example:6380/0"]
)
def test_redis_brokers_use_the_atomic_fetch_transport(tmp_path, broker):
    conf = config_for(tmp_path, broker)
    assert conf["broker_transport"] == REDIS_TRANSPORT
    # kombu resolves the class named in the setting, not the one the URL scheme names.
    conn = Connection(broker, transport=conf["broker_transport"])
    assert type(conn.transport) is Transport


@pytest.mark.parametrize(
    "broker", ["amqp://guest:guest@127.0.0.1:5672//", "memory://", "redis+socket:///tmp/redis.sock"]
)
def test_other_brokers_keep_kombus_transport(tmp_path, broker):
    assert config_for(tmp_path, broker)["broker_transport"] is None


SENTINELS = "sentinel://:pw@10.0.0.1:26379/2;sentinel://:pw@10.0.0.2:26380/2"


def test_sentinel_brokers_use_the_atomic_fetch_behind_sentinel(tmp_path):
    conf = config_for(
        tmp_path,
        SENTINELS,
        sentinel_master_name="mymaster",
        sentinel_password="sentinel-pw",
        sentinel_socket_timeout=3,
    )
    assert conf["broker_transport"] == REDIS_SENTINEL_TRANSPORT
    options = conf["broker_transport_options"]
    assert options["master_name"] == "mymaster"
    kwargs = dict(options["sentinel_kwargs"])
    # A dead sentinel is skipped at once, not retried with redis-py's 1-10 s backoff.
    assert kwargs.pop("retry").get_retries() == 0
    assert kwargs == {"socket_timeout": 3, "socket_connect_timeout": 3, "password": "sentinel-pw"}
    assert (
        options["priority_steps"] and options["sep"] == ":"
    )  # the Redis layout, as on plain Redis
    assert "master_name" not in conf["result_backend_transport_options"]  # the backend is redis://
    conn = Connection(
        SENTINELS,
        transport=conf["broker_transport"],
        transport_options=options,
        failover_strategy=conf["broker_failover_strategy"],
    )
    assert type(conn.transport) is SentinelTransport
    assert conn.port == 26379 and conn.virtual_host == "2" and conn.alt == SENTINELS.split(";")
    # A connection error switches "to the next URL": the transport must stay ours.
    conn.maybe_switch_next()
    assert type(conn.transport) is SentinelTransport and conn.password == "pw"
    assert set(SentinelChannel.from_transport_options) >= {
        "master_name",
        "sentinel_kwargs",
        "atomic_fetch",
        "priority_steps",
        "sep",
    }


def test_a_sentinel_result_backend_gets_the_master_name(tmp_path):
    settings = load_settings(
        None,
        celery_broker_url="redis://127.0.0.1:6379/0",
        celery_result_backend=SENTINELS,
        sentinel_master_name="mymaster",
        paths_data_dir=tmp_path,
    )
    conf = celery_config(settings)
    assert conf["broker_transport"] == REDIS_TRANSPORT and "broker_failover_strategy" not in conf
    assert conf["result_backend_transport_options"]["master_name"] == "mymaster"
    kwargs = dict(conf["result_backend_transport_options"]["sentinel_kwargs"])
    assert kwargs.pop("retry").get_retries() == 0
    assert kwargs == {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}


def test_rediss_without_tls_files_verifies_against_system_cas(tmp_path):
    """kombu alone would connect to rediss:// without checking the certificate."""
    conf = config_for(tmp_path, "rediss://cache.example:6380/0")
    assert conf["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}


def test_rediss_cert_reqs_none_is_honoured(tmp_path):
    conf = config_for(tmp_path, "rediss://cache.example:6380/0", tls_cert_reqs="none")
    assert conf["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_NONE}


@pytest.mark.parametrize(("visibility", "expiry"), [(8, 5), (40, 20), (3600, 20)])
def test_a_dead_sweepers_lock_frees_itself_within_seconds(tmp_path, visibility, expiry):
    """kombu's default (300 s) lets one worker SIGKILLed mid-sweep stop every sweep for 5 minutes."""
    conf = config_for(
        tmp_path,
        "redis://127.0.0.1:6379/0",
        celery_visibility_timeout=visibility,
        celery_task_time_limit=min(6, visibility - 1),
        celery_task_soft_time_limit=min(5, visibility - 2),
    )
    assert conf["broker_transport_options"]["unacked_mutex_expire"] == expiry


_GOSSIP_PROBE = """
import sys
from afirgen_tasks.factory import create_app
from afirgen_tasks.settings import load_settings
settings = load_settings(None, paths_data_dir=sys.argv[1], celery_broker_url="redis://127.0.0.1:1/0",
                         celery_worker_gossip=sys.argv[2] == "on")
worker = create_app(settings).Worker(hostname="probe@h", pool="solo", without_mingle=True, quiet=True,
                                     redirect_stdouts=False, without_gossip=sys.argv[3] == "flag")
print(worker.consumer.gossip.enabled)
"""


@pytest.mark.parametrize(
    ("setting", "flag", "enabled"),
    [("off", "", False), ("on", "", True), ("on", "flag", False)],
    ids=["default-off", "setting-turns-it-on", "cli-flag-still-wins"],
)
def test_workers_run_without_gossip_unless_the_setting_asks(tmp_path, setting, flag, enabled):
    # A worker object is built (never started: no broker needed) in a child process, since
    # building one installs Celery's worker-side task tracing in the process that does it.
    proc = subprocess.run(
        [sys.executable, "-c", _GOSSIP_PROBE, str(tmp_path), setting, flag],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == str(enabled)


def test_gossip_is_off_in_the_defaults_and_the_shipped_config(tmp_path):
    assert load_settings(None, paths_data_dir=tmp_path).celery_worker_gossip is False
    assert load_settings(REPO_ROOT / "config.toml").celery_worker_gossip is False
