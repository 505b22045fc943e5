"""Importing afirgen_tasks reads no settings; settings travel explicitly, never through a module global."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from afirgen_tasks.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def _run(code: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AFIRGEN_", "CELERY_"))}
    full_env.update(env, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_importing_the_celery_app_module_reads_no_config(tmp_path):
    (tmp_path / "config.toml").write_text("this is [ not toml")
    done = _run(
        "import afirgen_tasks.celery_app as m; from afirgen_tasks.factory import create_app; print('ok')",
        tmp_path,
        {},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_worker_target_still_reads_the_config_once_asked(tmp_path):
    (tmp_path / "config.toml").write_text("this is [ not toml")
    done = _run("from afirgen_tasks.celery_app import app", tmp_path, {})
    assert done.returncode == 2
    assert done.stderr.strip().startswith("afirgen: config error: config file")
    assert "Traceback" not in done.stderr
    good = tmp_path / "good"
    good.mkdir()
    (good / "config.toml").write_text("[console]\n")
    done = _run(
        "from afirgen_tasks.celery_app import app, settings; print(app.main, settings.config_path.name)",
        good,
        {"AFIRGEN_PATHS_DATA_DIR": str(tmp_path / "var")},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["afirgen", "config.toml"]


def test_check_with_config_ignores_a_broken_config_in_the_working_directory(tmp_path):
    (tmp_path / "config.toml").write_text("this is [ not toml")
    good = tmp_path / "good.toml"
    good.write_text("[check]\nmin_workers = 0\n")
    env = {
        "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
        "AFIRGEN_PATHS_DATA_DIR": str(tmp_path / "var"),
    }
    code = f"import sys; from tui.cli import main; sys.exit(main(['--check', '--config', {str(good)!r}, '--timeout', '1']))"
    done = _run(code, tmp_path, env)
    assert "not valid TOML" not in done.stderr
    assert f"loaded from {good}" in done.stdout
    assert (
        done.returncode == 2
    )  # the broker (port 1) is unreachable: that, not the config, is the error


def test_settings_built_in_parallel_each_read_their_own_file(tmp_path):
    """The config path is a ContextVar: the demo's job thread and the console cannot swap files."""
    files = []
    for i in range(2):
        path = tmp_path / f"c{i}.toml"
        path.write_text(f"[console]\nrefresh_interval = 0.{i + 2}\n")
        files.append(path)
    results: dict[int, list[float]] = {0: [], 1: []}
    start = threading.Barrier(2)

    def load(i: int) -> None:
        start.wait()
        for _ in range(40):
            results[i].append(load_settings(files[i]).console_refresh_interval)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert set(results[0]) == {0.2} and set(results[1]) == {0.3}
