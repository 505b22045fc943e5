"""Which cluster a broker URL names (the history's key), and where a console keeps its state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from afirgen_tasks.settings import cluster_identity, load_settings, state_home
from tui.run import prepare_state_dir


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No CELERY_*/AFIRGEN_* in the environment, no config file; state under tmp_path."""
    for name in list(os.environ):
        if name.startswith(("CELERY_", "AFIRGEN_")) and not name.startswith("AFIRGEN_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no ./config.toml here
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return monkeypatch


# ---- the identity -------------------------------------------------------------------------
SAME = [
    ("redis://:pw@h:6379/0", "redis://h:6379/0"),
    ("redis://user:other-pw@h:6379/0", "redis://h:6379/0"),
    ("redis://secret@h:6379/0", "redis://h:6379/0"),
    ("redis://H", "redis://h:6379/0"),
    ("redis://h:6379", "redis://h/0"),
    ("redis://h/0?socket_timeout=3", "redis://h:6379/0"),
    ("redis://h?db=4", "redis://h:6379/4"),
    ("redis://h/04", "redis://h:6379/4"),
    ("redis://:p@ss:w/rd@h:6379/2", "redis://h:6379/2"),
    ("amqp://guest:guest@rabbit:5672//", "amqp://rabbit"),
    ("pyamqp://u:p@rabbit/%2F", "amqp://rabbit:5672//"),
    ("redis://h1:6379;redis://:pw@h2:6379", "redis://h2:6379;redis://h1:6379"),
    ("sentinel://:pw@s2:26379;sentinel://s1/0", "sentinel://s1:26379;sentinel://s2"),
]


@pytest.mark.parametrize(("a", "b"), SAME, ids=[a for a, _ in SAME])
def test_credentials_case_defaults_and_order_do_not_make_another_cluster(a: str, b: str):
    assert cluster_identity(a, "mymaster") == cluster_identity(b, "mymaster")


DIFFERENT = [
    ("redis://h:6379/0", "redis://h:6379/1"),  # another db
    ("redis://h:6379/0", "redis://h:6380/0"),  # another port
    ("redis://h:6379/0", "redis://g:6379/0"),  # another host
    ("redis://h:6379/0", "rediss://h:6379/0"),
    ("amqp://rabbit//", "amqp://rabbit/prod"),  # another vhost
    ("redis://h:6379/0", "amqp://h:6379//"),
]


@pytest.mark.parametrize(("a", "b"), DIFFERENT, ids=[f"{a} {b}" for a, b in DIFFERENT])
def test_db_vhost_host_port_and_scheme_make_another_cluster(a: str, b: str):
    assert cluster_identity(a) != cluster_identity(b)


def test_the_identity_reads_like_a_url_without_credentials():
    assert cluster_identity("redis://:s3cret@10.0.0.5:6379/0") == "redis://10.0.0.5:6379/0"
    assert cluster_identity("amqp://guest:guest@rabbit//") == "amqp://rabbit:5672//"
    assert cluster_identity("redis://[::1]/3") == "redis://[::1]:6379/3"
    # sentinel: the sentinels (sorted) and the master they watch
    assert (
        cluster_identity("sentinel://:pw@s2:26379;sentinel://:pw@s1:26379/0", "mymaster")
        == "sentinel://s1:26379,s2:26379/0?master=mymaster"
    )
    # another master behind the same sentinels is another cluster
    assert cluster_identity("sentinel://s1/0", "a") != cluster_identity("sentinel://s1/0", "b")


@given(
    user=st.text(st.characters(codec="ascii", exclude_characters="@:/?#;"), max_size=12),
    password=st.text(st.characters(codec="ascii", exclude_characters="/?#"), min_size=1),
    db=st.integers(0, 15),
)
def test_no_credential_ever_takes_part(user: str, password: str, db: int):
    url = f"redis://{user}:{password}@cache.internal:6379/{db}"
    assert cluster_identity(url) == f"redis://cache.internal:6379/{db}"


def test_settings_name_their_cluster(clean_env):
    clean_env.setenv("CELERY_BROKER_URL", "redis://:pw@Broker.Example:6380/2")
    assert load_settings().cluster_id == "redis://broker.example:6380/2"


# ---- where the console's state lives ---------------------------------------------------------
def test_without_a_config_the_console_state_goes_to_xdg_state_home(clean_env, tmp_path):
    s = load_settings()
    assert s.config_path is None
    home = tmp_path / "state" / "afirgen-tui"
    assert state_home() == home
    assert s.history_db == home / "history.sqlite3"
    assert s.console_audit_log == home / "audit.log"
    # the workers' [paths] stay where they were
    assert s.paths_data_dir == Path("var")
    assert prepare_state_dir(s) == home
    assert home.is_dir() and (home.stat().st_mode & 0o777) == 0o700


def test_without_xdg_state_home_it_is_under_local_state(clean_env, tmp_path):
    clean_env.delenv("XDG_STATE_HOME")
    clean_env.setenv("HOME", str(tmp_path / "home"))
    assert load_settings().history_db == tmp_path / "home/.local/state/afirgen-tui/history.sqlite3"
    clean_env.setenv("XDG_STATE_HOME", "relative/dir")  # the XDG rules: ignored
    assert load_settings().console_audit_log == tmp_path / "home/.local/state/afirgen-tui/audit.log"


def test_a_config_file_without_them_does_not_pull_the_state_next_to_it(clean_env, tmp_path):
    cfg = tmp_path / "etc" / "config.toml"
    cfg.parent.mkdir()
    cfg.write_text('[paths]\ndata_dir = "data"\n')
    s = load_settings(cfg)
    assert s.history_db == tmp_path / "state/afirgen-tui/history.sqlite3"
    assert s.paths_data_dir == cfg.parent.resolve() / "data"


def test_explicit_settings_and_environment_win(clean_env, tmp_path):
    cfg = tmp_path / "etc" / "config.toml"
    cfg.parent.mkdir()
    cfg.write_text('[history]\ndb = "h/history.sqlite3"\n[console]\naudit_log = "a/audit.log"\n')
    s = load_settings(cfg)
    # relative to the config file, as before
    assert s.history_db == cfg.parent.resolve() / "h/history.sqlite3"
    assert s.console_audit_log == cfg.parent.resolve() / "a/audit.log"
    assert prepare_state_dir(s) is None
    assert not (tmp_path / "state").exists()
    clean_env.setenv("AFIRGEN_HISTORY_DB", str(tmp_path / "env.sqlite3"))
    assert load_settings(cfg).history_db == tmp_path / "env.sqlite3"
    assert load_settings(cfg, history_db=tmp_path / "kw.sqlite3").history_db == (
        tmp_path / "kw.sqlite3"
    )
