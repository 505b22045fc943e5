"""``[clusters.NAME]`` tables: overrides per cluster, one line per problem, exit 2, secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from afirgen_tasks.settings import SettingsError, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = "clu5terPW-7a1"

GOOD = f"""
[console]
cluster_name = "eu"
[check]
backlog_warn = 100
[clusters.us]
broker = "redis://:{SECRET}@us-redis:6380/3"
backend = "redis://:{SECRET}@us-redis:6380/4"
backlog_warn = 5
backlog_fail = 10
min_workers = 2
cert_reqs = "optional"
[clusters.lab]
broker = "amqp://guest:guest@lab//"
"""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("CELERY_", "AFIRGEN_")) and not name.startswith("AFIRGEN_TEST_"):
            monkeypatch.delenv(name)
    return monkeypatch


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    return info.value.lines


def test_each_table_overrides_the_top_level_for_its_cluster_only(clean_env, tmp_path):
    s = load_settings(config(tmp_path, GOOD))
    assert s.cluster_names() == ["eu", "us", "lab"]
    assert s.cluster_name == "eu" and s.has_several_clusters
    us = s.for_cluster("us")
    assert us.cluster_name == "us"
    assert us.cluster_id == "redis://us-redis:6380/3"
    assert us.celery_result_backend.endswith("@us-redis:6380/4")
    assert (us.check_backlog_warn, us.check_backlog_fail, us.check_min_workers) == (5, 10, 2)
    assert us.tls_cert_reqs == "optional"
    # what the table leaves out is the top-level value
    lab = s.for_cluster("lab")
    assert lab.check_backlog_warn == 100 and lab.celery_result_backend == s.celery_result_backend
    assert lab.cluster_id == "amqp://lab:5672//"
    # the top level is untouched, and every copy finds its way back and across
    assert s.check_backlog_warn == 100 and s.cluster_id == "redis://127.0.0.1:6379/0"
    assert us.for_cluster("eu") is s
    assert us.for_cluster("lab").cluster_id == lab.cluster_id
    assert us.config_path == s.config_path == tmp_path / "config.toml"


def test_the_default_cluster_is_named_default(clean_env, tmp_path):
    s = load_settings(config(tmp_path, '[clusters.b]\nbroker = "redis://b:6379/0"\n'))
    assert s.cluster_names() == ["default", "b"]
    assert s.for_cluster("default") is s
    plain = load_settings(config(tmp_path, ""))
    assert plain.cluster_names() == ["default"] and not plain.has_several_clusters


def test_an_unknown_cluster_is_one_line_naming_the_known_ones(clean_env, tmp_path):
    s = load_settings(config(tmp_path, GOOD))
    with pytest.raises(SettingsError) as info:
        s.for_cluster("asia")
    assert info.value.lines == ["unknown cluster 'asia' (known: eu, us, lab)"]


def test_secrets_of_every_cluster_are_known_and_never_shown(clean_env, tmp_path):
    s = load_settings(config(tmp_path, GOOD))
    assert SECRET in s.secrets()
    us = s.for_cluster("us")
    assert SECRET not in repr(s) and SECRET not in repr(us) and SECRET not in str(s.clusters)
    assert SECRET not in us.broker_display


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            '[clusters.b]\nbrokr = "redis://b"\nbroker = "redis://b"\n',
            "[clusters.b]: unknown setting 'brokr' (known: broker, backend,",
        ),
        ('[clusters.b]\nbackend = "redis://b"\n', "[clusters.b]: broker is required"),
        ('[clusters.b]\nbroker = "ftp://b"\n', "[clusters.b] broker='ftp://b': has unsupported"),
        (
            f'[clusters.b]\nbroker = "redis://:{SECRET}@h/0"\nbackend = "nope"\n',
            "[clusters.b] backend='nope': must be a URL like redis://host:6379/0",
        ),
        (
            '[clusters.b]\nbroker = "redis://b"\ncert_reqs = "maybe"\n',
            "[clusters.b] cert_reqs='maybe' is not one of required, optional, none",
        ),
        (
            '[clusters.b]\nbroker = "redis://b"\nbacklog_warn = 50\nbacklog_fail = 5\n',
            "[clusters.b] backlog_warn=50 must not exceed backlog_fail=5",
        ),
        (
            '[clusters.b]\nbroker = "sentinel://s:26379"\n',
            "[clusters.b] broker is a sentinel:// URL but master_name is not set",
        ),
        (
            '[clusters.Default]\nbroker = "redis://b"\n',
            "[clusters.Default]: the name is already taken by [console] cluster_name",
        ),
        ('[clusters."a b"]\nbroker = "redis://b"\n', "[clusters.a b]: a cluster name is 1-64"),
        (
            '[clusters.a]\nbroker = "redis://a"\n[clusters.a]\nbroker = "redis://b"\n',
            "Cannot declare ('clusters', 'a') twice",
        ),
        ("[clusters]\nb = 1\n", "[clusters] b must be a table"),
    ],
)
def test_each_problem_is_one_line(clean_env, tmp_path, text, line):
    lines = problems(config(tmp_path, text))
    assert len(lines) == 1, lines
    assert line in lines[0], lines
    assert SECRET not in lines[0]


def test_several_bad_tables_give_one_line_each(clean_env, tmp_path):
    text = (
        '[clusters.a]\nbroker = "ftp://a"\n'
        '[clusters.b]\nbroker = "redis://b"\nmin_workers = -1\n'
        '[clusters.c]\nbroker = "redis://c"\n'
    )
    lines = problems(config(tmp_path, text))
    assert len(lines) == 2, lines
    assert lines[0].startswith("[clusters.a] broker=") and lines[1].startswith(
        "[clusters.b] min_workers=-1"
    )


@pytest.mark.parametrize("mode", ["--check", "console"])
def test_cli_cluster_unknown_exits_2_with_one_line(clean_env, tmp_path, mode):
    path = config(tmp_path, GOOD)
    args = [sys.executable, "-m", "tui", "--config", str(path), "--cluster", "asia"]
    if mode == "--check":
        args.append("--check")
    proc = subprocess.run(
        args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown cluster 'asia' (known: eu, us, lab)" in lines[0], lines
    assert SECRET not in proc.stdout + proc.stderr


def test_cli_cluster_with_broker_is_refused(clean_env, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tui", "--check", "--cluster", "us", "--broker", "redis://x"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2 and "--cluster cannot be combined" in proc.stderr
