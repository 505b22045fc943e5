"""Wall time of ``afirgen-tui --check`` vs ``celery inspect ping`` on a healthy local cluster.

    python bench/bench_check.py [--url redis://127.0.0.1:6379] [--db 12] [--runs 7]

Starts two workers (all five queues) on a scratch database that must be empty, runs each
command ``--runs`` times as a subprocess, prints the medians and the ratio (goal <= 0.4x),
then stops the workers and empties the database.  Run by hand; never in CI.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]
QUEUES = "default,email,reports,analytics,cleanup"


def environ(broker: str, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "AFIRGEN_"))}
    (tmp / "config.toml").write_text("")
    env.update(
        CELERY_BROKER_URL=broker,
        CELERY_RESULT_BACKEND=broker,
        AFIRGEN_CONFIG=str(tmp / "config.toml"),
        AFIRGEN_PATHS_DATA_DIR=str(tmp / "var"),
        AFIRGEN_PATHS_REPORT_DIR=str(tmp / "var/reports"),
        AFIRGEN_PATHS_OUTBOX_DIR=str(tmp / "var/outbox"),
        AFIRGEN_PATHS_TEMP_DIR=str(tmp / "var/tmp"),
        AFIRGEN_CONSOLE_AUDIT_LOG=str(tmp / "var/audit.log"),
        AFIRGEN_HISTORY_DB=str(tmp / "var/history.sqlite3"),
        PYTHONPATH=str(REPO),
    )
    return env


def timed(argv: list[str], env: dict[str, str], expect: int) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != expect:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379")
    parser.add_argument("--db", type=int, default=12, help="scratch database (must be empty)")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    broker = f"{args.url}/{args.db}"
    client = redis.Redis.from_url(broker, socket_timeout=5)
    if client.dbsize():
        print(f"db {args.db} is not empty; pick an empty scratch db with --db", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="afirgen-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        env = environ(broker, tmp)
        workers = []
        try:
            for i in (1, 2):
                log = open(tmp / f"worker{i}.log", "wb")  # noqa: SIM115 -- closed with the process
                workers.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "celery",
                            "-A",
                            "afirgen_tasks.celery_app",
                            "worker",
                            "-Q",
                            QUEUES,
                            "-c",
                            "2",
                            "-n",
                            f"bench{i}@%h",
                            "--without-mingle",
                            "--without-gossip",
                            "-l",
                            "warning",
                        ],
                        cwd=REPO,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            check = [sys.executable, "-m", "tui", "--check"]
            ping = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "afirgen_tasks.celery_app",
                "inspect",
                "ping",
            ]
            deadline = time.monotonic() + 60
            while True:  # both workers up: the check itself says so
                proc = subprocess.run(
                    [*check, "--json"], cwd=REPO, env=env, capture_output=True, text=True
                )
                if proc.returncode == 0 and '"value": 2,' in proc.stdout:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"workers did not come up:\n{proc.stdout}{proc.stderr}")
                time.sleep(0.5)
            results = {"check": [], "ping": []}
            for _ in range(args.runs):  # interleaved, so load spikes hit both alike
                results["check"].append(timed(check, env, 0))
                results["ping"].append(timed(ping, env, 0))
        finally:
            for proc in workers:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            for proc in workers:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
            client.flushdb()

    check_s, ping_s = statistics.median(results["check"]), statistics.median(results["ping"])
    print(
        f"healthy cluster: 2 workers on {broker}, {args.runs} runs each, wall time per run (median)"
    )
    print(
        f"  afirgen-tui --check ({' '.join(check[1:])}):  {check_s:.3f} s  "
        f"(min {min(results['check']):.3f}, max {max(results['check']):.3f})"
    )
    print(
        f"  celery inspect ping ({' '.join(ping[1:])}):  {ping_s:.3f} s  "
        f"(min {min(results['ping']):.3f}, max {max(results['ping']):.3f})"
    )
    print(f"  ratio check / ping: {check_s / ping_s:.2f}x (goal <= 0.4x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
