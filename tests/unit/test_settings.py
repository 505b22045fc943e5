"""Settings: precedence, one-line errors for every bad value, exit code 2, masked secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from afirgen_tasks.settings import SettingsError, load_settings, mask_url

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cretPW-9f2"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No CELERY_*/AFIRGEN_* in the environment; AFIRGEN_CONFIG is an empty file."""
    for name in list(os.environ):
        if name.startswith(("CELERY_", "AFIRGEN_")) and not name.startswith("AFIRGEN_TEST_"):
            monkeypatch.delenv(name)
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    monkeypatch.setenv("AFIRGEN_CONFIG", str(empty))
    return monkeypatch


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_without_file(clean_env):
    s = load_settings()
    assert s.celery_broker_url == "redis://127.0.0.1:6379/0"
    assert s.celery_worker_concurrency == 4
    assert s.autoscale is None


def test_precedence_keyword_over_env_over_file(clean_env, tmp_path):
    cfg = write_config(
        tmp_path, '[celery]\nworker_concurrency = 3\nworker_pool = "solo"\n[smtp]\nport = 2525\n'
    )
    assert load_settings(cfg).celery_worker_concurrency == 3
    clean_env.setenv("CELERY_WORKER_CONCURRENCY", "7")
    clean_env.setenv("AFIRGEN_SMTP_PORT", "2626")
    s = load_settings(cfg)
    assert (s.celery_worker_concurrency, s.celery_worker_pool, s.smtp_port) == (7, "solo", 2626)
    assert load_settings(cfg, celery_worker_concurrency=9).celery_worker_concurrency == 9


def test_afirgen_config_env_names_the_file_and_relative_paths_follow_it(clean_env, tmp_path):
    cfg = write_config(
        tmp_path, '[paths]\ndata_dir = "data"\n[celery]\nworker_autoscale = " 8 , 2 "\n'
    )
    clean_env.setenv("AFIRGEN_CONFIG", str(cfg))
    s = load_settings()
    assert s.config_path == cfg.resolve()
    assert s.paths_data_dir == tmp_path.resolve() / "data"
    assert s.fir_db_path == tmp_path.resolve() / "data" / "firs.sqlite3"
    assert (s.celery_worker_autoscale, s.autoscale) == ("8,2", (8, 2))


#: (environment variable, bad value, a fragment the one-line message must contain)
BAD_VALUES = [
    ("CELERY_BROKER_URL", "localhost:6379", "must be a URL like redis://"),
    ("CELERY_BROKER_URL", "http://broker:80/", "unsupported scheme 'http'"),
    ("CELERY_RESULT_BACKEND", "nourl", "must be a URL"),
    ("CELERY_WORKER_POOL", "eventlet", "is not one of prefork, solo, threads, gevent"),
    ("CELERY_WORKER_CONCURRENCY", "0", "greater than or equal to 1"),
    ("CELERY_WORKER_CONCURRENCY", "abc", "valid integer"),
    ("CELERY_WORKER_CONCURRENCY", "513", "less than or equal to 512"),
    ("CELERY_WORKER_PREFETCH_MULTIPLIER", "-1", "greater than or equal to 0"),
    ("CELERY_WORKER_MAX_TASKS_PER_CHILD", "-5", "greater than or equal to 0"),
    ("CELERY_WORKER_AUTOSCALE", "2,8", "max >= min"),
    ("CELERY_WORKER_AUTOSCALE", "eight", "must be 'max,min'"),
    ("CELERY_VISIBILITY_TIMEOUT", "100", "must exceed CELERY_TASK_TIME_LIMIT=600"),
    ("CELERY_TASK_SOFT_TIME_LIMIT", "700", "must be below CELERY_TASK_TIME_LIMIT=600"),
    ("CELERY_TASK_MAX_RETRIES", "101", "less than or equal to 100"),
    ("CELERY_TASK_RETRY_BACKOFF_MAX", "0", "greater than or equal to 1"),
    ("AFIRGEN_TLS_CERT_REQS", "maybe", "is not one of required, optional, none"),
    ("AFIRGEN_SMTP_PORT", "70000", "less than or equal to 65535"),
    ("AFIRGEN_SMTP_SECURITY", "tls", "is not one of starttls, ssl, none"),
    ("AFIRGEN_SMTP_TIMEOUT", "0", "greater than 0"),
    ("AFIRGEN_CONSOLE_MAX_TASKS", "5", "greater than or equal to 100"),
    ("AFIRGEN_CONSOLE_EVENT_BUFFER", "10", "greater than or equal to 1000"),
    ("AFIRGEN_CONSOLE_REFRESH_INTERVAL", "0.01", "greater than or equal to 0.05"),
    ("AFIRGEN_CONSOLE_READ_ONLY", "maybe", "valid boolean"),
    ("AFIRGEN_CONSOLE_CONTROL_TIMEOUT", "0", "greater than 0"),
    ("AFIRGEN_CHECK_MIN_WORKERS", "-1", "greater than or equal to 0"),
    ("AFIRGEN_CHECK_BACKLOG_WARN", "20000", "must not exceed AFIRGEN_CHECK_BACKLOG_FAIL=10000"),
    (
        "AFIRGEN_CHECK_QUEUE_BACKLOG_WARN",
        '{"email": -1}',
        "thresholds must be >= 0 (queue 'email')",
    ),
    ("AFIRGEN_HISTORY_MAX_ROWS", "10", "greater than or equal to 1000"),
    ("AFIRGEN_HISTORY_MAX_AGE_DAYS", "-1", "greater than 0"),
    ("AFIRGEN_REDACT_PATTERNS", '["("]', "not a valid regular expression"),
    ("AFIRGEN_SENTINEL_MASTER_NAME", "my master", "printable characters, no spaces"),
    ("AFIRGEN_SENTINEL_SOCKET_TIMEOUT", "0", "greater than 0"),
]


@pytest.mark.parametrize(
    ("name", "value", "fragment"), BAD_VALUES, ids=[f"{n}={v}" for n, v, _ in BAD_VALUES]
)
def test_every_bad_value_is_rejected_with_one_line(clean_env, name, value, fragment):
    clean_env.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    lines = info.value.lines
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert name in lines[0] and fragment in lines[0], lines[0]


@pytest.mark.parametrize("name", ["AFIRGEN_REDACT_PATTERNS", "AFIRGEN_CHECK_QUEUE_BACKLOG_FAIL"])
def test_non_json_collection_env_value_is_a_one_line_error(clean_env, name):
    clean_env.setenv(name, "not json")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert name in info.value.lines[0]


def test_several_problems_give_one_line_each(clean_env):
    clean_env.setenv("CELERY_WORKER_POOL", "eventlet")
    clean_env.setenv("AFIRGEN_SMTP_PORT", "0")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert len(info.value.lines) == 2
    assert {line.split("=")[0] for line in info.value.lines} == {
        "CELERY_WORKER_POOL",
        "AFIRGEN_SMTP_PORT",
    }


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[nope]\nx = 1\n", "unknown section [nope]"),
        ("[celery]\nbrokr_url = 'redis://h/0'\n", "unknown setting [celery] brokr_url"),
        (f"[smtp]\npassword = {SECRET}\n", "is not valid TOML"),
        ("[celery]\nworker_pool = 'eventlet'\n", "CELERY_WORKER_POOL='eventlet' is not one of"),
    ],
)
def test_bad_config_files(clean_env, tmp_path, text, fragment):
    cfg = write_config(tmp_path, text)
    with pytest.raises(SettingsError) as info:
        load_settings(cfg)
    assert len(info.value.lines) == 1
    assert fragment in info.value.lines[0]
    assert SECRET not in info.value.lines[0]


def test_missing_config_file(clean_env, tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:pw@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://pw@host:6379/0", "redis://***@host:6379/0"),
        ("amqp://guest:guest@127.0.0.1:5672//", "amqp://guest:***@127.0.0.1:5672//"),
        ("amqp://guest@host//", "amqp://guest@host//"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("sentinel://h:26379?password=pw&x=1", "sentinel://h:26379?password=***&x=1"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_secrets_are_listed_and_masked_in_display(clean_env):
    clean_env.setenv("CELERY_BROKER_URL", f"redis://:{SECRET}@h:6379/0")
    clean_env.setenv("CELERY_RESULT_BACKEND", f"redis://{SECRET}x@h:6379/1")
    clean_env.setenv("AFIRGEN_SMTP_PASSWORD", SECRET + "smtp")
    s = load_settings()
    assert set(s.secrets()) == {SECRET, SECRET + "x", SECRET + "smtp"}
    assert SECRET not in s.broker_display + s.backend_display


def test_repr_of_settings_hides_url_passwords(clean_env):
    clean_env.setenv("CELERY_BROKER_URL", f"redis://:{SECRET}@h:6379/0")
    s = load_settings()
    assert SECRET not in repr(s)


def test_secret_never_in_error_lines(clean_env):
    clean_env.setenv("CELERY_BROKER_URL", f"ftp://user:{SECRET}@h/")
    clean_env.setenv("CELERY_RESULT_BACKEND", f"redis://:{SECRET}@h:6379/1")
    clean_env.setenv("AFIRGEN_SMTP_PASSWORD", SECRET)
    clean_env.setenv("CELERY_WORKER_POOL", "eventlet")
    with pytest.raises(SettingsError) as info:
        load_settings()
    text = "\n".join(info.value.lines)
    assert "ftp://user:***@h/" in text
    assert SECRET not in text


def _run_load_or_exit(
    env_overrides: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "AFIRGEN_"))}
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    env.update({"AFIRGEN_CONFIG": str(empty), "PYTHONPATH": str(REPO_ROOT)}, **env_overrides)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from afirgen_tasks.settings import load_settings_or_exit; load_settings_or_exit()",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_load_settings_or_exit_prints_lines_and_exits_2(tmp_path):
    proc = _run_load_or_exit(
        {
            "CELERY_WORKER_CONCURRENCY": "zero",
            "CELERY_BROKER_URL": f"ftp://u:{SECRET}@h/",
            "AFIRGEN_SMTP_PASSWORD": SECRET,
        },
        tmp_path,
    )
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, proc.stderr
    assert all(line.startswith("afirgen: config error: ") for line in lines)
    assert "Traceback" not in proc.stderr
    assert SECRET not in proc.stderr + proc.stdout


def test_load_settings_or_exit_succeeds_quietly(tmp_path):
    proc = _run_load_or_exit({}, tmp_path)
    assert (proc.returncode, proc.stderr) == (0, "")


# ---- masking that cannot be fooled (issue 12, item 7) ------------------------------------
HOSTILE_PASSWORDS = [
    "Pa55word/with/slash",
    "p@ss:w/rd#1",
    "q?uery=1&x",
    "pct%41%zz",
    "pässwörd-ß",
    "a:b@c:d",
]


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS)
@pytest.mark.parametrize("user", ["", "ops"])
def test_mask_url_splits_at_the_last_at_whatever_the_password_holds(password, user):
    from afirgen_tasks.settings import SecretScrubber, url_secrets

    url = f"redis://{user}:{password}@127.0.0.1:6379/0"
    assert mask_url(url) == f"redis://{user}:***@127.0.0.1:6379/0"
    assert password in url_secrets(url)
    # in free text (an error message) with the password quoted again on its own
    text = SecretScrubber(url_secrets(url))(
        f"Error 111 connecting to {url}. auth {password!r} failed"
    )
    assert password not in text and "127.0.0.1:6379/0" in text


def test_url_secrets_lists_the_percent_decoded_password_too():
    from afirgen_tasks.settings import url_secrets

    assert url_secrets("redis://:p%40ss%3Aw%2Frd%231@h:1/0") == [
        "p%40ss%3Aw%2Frd%231",
        "p@ss:w/rd#1",
    ]
    assert url_secrets("sentinel://:a@h1:1;sentinel://:b%2F@h2:2") == ["a", "b%2F", "b/"]
    assert (
        mask_url("sentinel://:a@h1:1;sentinel://:b%2F@h2:2")
        == "sentinel://:***@h1:1;sentinel://:***@h2:2"
    )


def test_scrubber_catches_json_escaped_secrets():
    import json

    from afirgen_tasks.settings import SecretScrubber

    secret = 'pä"ss\\wd'
    scrub = SecretScrubber([secret])
    for dumped in (json.dumps({"e": secret}), json.dumps({"e": secret}, ensure_ascii=False)):
        assert secret not in json.loads(scrub(dumped))["e"]


@pytest.mark.parametrize("password", ["Pa55word/with/slash", "p@ss:w/rd#1", "x?y"])
def test_a_raw_authority_delimiter_in_the_password_is_refused_masked(clean_env, password):
    # kombu and redis-py end the host part at the first / ? #: such a URL cannot connect as meant
    with pytest.raises(SettingsError) as info:
        load_settings(None, celery_broker_url=f"redis://:{password}@127.0.0.1:1/0")
    [line] = info.value.lines
    assert (
        "percent-encode" in line and password not in line and "redis://:***@127.0.0.1:1/0" in line
    )
    for fragment in password.replace("#", "/").replace("?", "/").split("/"):
        assert f"'{fragment}'" not in line


def test_a_percent_encoded_password_loads_and_is_listed_decoded(clean_env):
    s = load_settings(None, celery_broker_url="redis://:p%40ss%3Aw%2Frd%231%3F%C3%A4@127.0.0.1:1/0")
    assert "p@ss:w/rd#1?ä" in s.secrets()
    assert s.broker_display == "redis://:***@127.0.0.1:1/0"


LATIN1_CONFIG = "[console]\n# Caf\u00e9 de la Gare\nmax_tasks = 1000\n".encode("latin-1")


def test_non_utf8_config_file_is_one_line_naming_it(clean_env, tmp_path):
    cfg = tmp_path / "latin1.toml"
    cfg.write_bytes(LATIN1_CONFIG)
    with pytest.raises(SettingsError) as info:
        load_settings(cfg)
    assert info.value.lines == [
        f"config file {cfg} is not UTF-8 (byte 0xe9 on line 2); save it as UTF-8"
    ]


def _entry_points() -> list[tuple[str, list[str]]]:
    """Each way a person starts something that reads config.toml."""
    script = Path(sys.executable).with_name("afirgen-tui")
    tui = [str(script)] if script.exists() else [sys.executable, "-m", "tui"]
    return [
        ("check", [*tui, "--check", "--config", "{cfg}"]),
        ("console", [*tui, "--config", "{cfg}"]),
        ("celery", [sys.executable, "-m", "celery", "-A", "afirgen_tasks.celery_app", "report"]),
    ]


@pytest.mark.parametrize(("name", "argv"), _entry_points(), ids=[n for n, _ in _entry_points()])
def test_non_utf8_config_file_exits_2_with_one_line(tmp_path, name, argv):
    cfg = tmp_path / "bad.toml"
    cfg.write_bytes(LATIN1_CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "AFIRGEN_"))}
    env.update({"AFIRGEN_CONFIG": str(cfg), "PYTHONPATH": str(REPO_ROOT), "TERM": "dumb"})
    proc = subprocess.run(
        [a.format(cfg=cfg) for a in argv],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(cfg) in lines[0] and "not UTF-8" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


# ---- Redis Sentinel ----------------------------------------------------------------------
SENTINELS = f"sentinel://:{SECRET}@h1:26379/0;sentinel://:{SECRET}@h2:26379/0"


@pytest.mark.parametrize("name", ["CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"])
def test_a_sentinel_url_without_a_master_name_is_one_line(clean_env, name):
    clean_env.setenv(name, SENTINELS)
    with pytest.raises(SettingsError) as info:
        load_settings()
    lines = info.value.lines
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert lines[0].startswith(
        f"{name} is a sentinel:// URL but AFIRGEN_SENTINEL_MASTER_NAME is not set"
    )
    assert "[sentinel] master_name" in lines[0] and SECRET not in lines[0]


def test_sentinel_settings_from_the_config_file(clean_env, tmp_path):
    cfg = write_config(
        tmp_path,
        f'''[celery]
broker_url = "{SENTINELS}"
[sentinel]
master_name = " mymaster "
password = "{SECRET}sentinel"
socket_timeout = 1.5
''',
    )
    s = load_settings(cfg)
    assert s.sentinel_master_name == "mymaster"
    assert s.sentinel_transport_options() == {
        "master_name": "mymaster",
        "sentinel_kwargs": {
            "socket_timeout": 1.5,
            "socket_connect_timeout": 1.5,
            "password": SECRET + "sentinel",
        },
    }
    assert s.sentinel_kwargs(socket_timeout=0.2)["socket_timeout"] == 0.2
    assert SECRET + "sentinel" in s.secrets() and SECRET in s.secrets()
    assert SECRET not in repr(s) + s.broker_display
    assert s.broker_display == "sentinel://:***@h1:26379/0;sentinel://:***@h2:26379/0"
    clean_env.setenv("AFIRGEN_SENTINEL_MASTER_NAME", "other")
    assert load_settings(cfg).sentinel_master_name == "other"


def test_sentinel_password_never_in_error_lines(clean_env):
    clean_env.setenv("AFIRGEN_SENTINEL_PASSWORD", SECRET)
    clean_env.setenv("AFIRGEN_SENTINEL_SOCKET_TIMEOUT", "-1")
    clean_env.setenv("CELERY_WORKER_POOL", "eventlet")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert SECRET not in "\n".join(info.value.lines)
