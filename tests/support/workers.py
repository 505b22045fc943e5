"""Real ``celery worker`` subprocesses for integration tests.

A :class:`WorkerProcess` runs ``python -m celery -A afirgen_tasks.celery_app worker`` with a
test's environment (its own Redis db, data dirs under ``tmp_path``), in its own process
group, logging to a file that is attached to the test report when the test fails.
Readiness is a remote-control ``ping`` answered by that node, polled with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from celery import Celery
from celery.utils.nodenames import host_format

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Environment prefixes stripped from the parent environment so a developer's shell
#: settings never leak into a test worker (the test's own values are added back).
_SCRUBBED_PREFIXES = ("CELERY_", "AFIRGEN_")


def worker_environ(test_env: Mapping[str, str]) -> dict[str, str]:
    """``os.environ`` without CELERY_*/AFIRGEN_* settings, plus ``test_env``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_SCRUBBED_PREFIXES) or k.startswith("AFIRGEN_TEST_")
    }
    env.update(test_env)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    return env


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid``, read from /proc (Linux; no psutil needed)."""
    children: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue  # the process exited while we looked
        # The command name (field 2) may hold spaces and parentheses; fields after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            children.append(int(entry))
    return sorted(children)


class WorkerProcess:
    """One ``celery worker`` subprocess.

    Attributes: ``name`` (``-n name@%h``), ``hostname`` (the expanded node name that
    ``inspect``/``control`` replies are keyed by), ``queues``, ``log_path``, ``proc``.
    Use :meth:`start` / :meth:`wait_ready` / :meth:`stop` / :meth:`kill` / :meth:`restart`;
    the ``worker_factory`` fixture kills every worker at teardown, even after a failure.
    """

    #: Startup flags every test worker gets (quick start, and immune to forged heartbeats);
    #: a test that must prove what the app does by itself sets this on its instance.
    feature_flags: tuple[str, ...] = ("--without-mingle", "--without-gossip")

    def __init__(
        self,
        app: Celery,
        env: Mapping[str, str],
        log_path: Path,
        *,
        name: str,
        queues: Sequence[str] = ("default",),
        concurrency: int = 1,
        pool: str = "prefork",
        prefetch_multiplier: int = 1,
        extra_args: Iterable[str] = (),
        loglevel: str = "info",
    ):
        self.app = app
        self.env = dict(env)
        self.log_path = log_path
        self.name = name
        self.hostname = host_format(f"{name}@%h")
        self.queues = tuple(queues)
        self.concurrency = concurrency
        self.pool = pool
        self.prefetch_multiplier = prefetch_multiplier
        self.extra_args = tuple(extra_args)
        self.loglevel = loglevel
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # ---- lifecycle ------------------------------------------------------------------
    @property
    def argv(self) -> list[str]:
        """The full command line."""
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "afirgen_tasks.celery_app",
            "worker",
            "-Q",
            ",".join(self.queues),
            "-c",
            str(self.concurrency),
            "-P",
            self.pool,
            "--prefetch-multiplier",
            str(self.prefetch_multiplier),
            "-n",
            f"{self.name}@%h",
            *self.feature_flags,
            "-l",
            self.loglevel,
            *self.extra_args,
        ]

    @property
    def pid(self) -> int | None:
        """The main process id (None before :meth:`start`)."""
        return self.proc.pid if self.proc else None

    def is_alive(self) -> bool:
        """True while the main process runs."""
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> WorkerProcess:
        """Start the subprocess (does not wait; see :meth:`wait_ready`)."""
        if self.is_alive():
            raise RuntimeError(f"worker {self.hostname} is already running")
        self.starts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO_ROOT,
                env=worker_environ(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: teardown kills the pool too
            )
        return self

    def ping(self, timeout: float = 0.5) -> bool:
        """True when this node answers a remote-control ping within ``timeout``."""
        replies = self.app.control.ping(destination=[self.hostname], timeout=timeout)
        return any(self.hostname in reply for reply in replies or [])

    def wait_ready(self, timeout: float = 30.0) -> WorkerProcess:
        """Poll :meth:`ping` until the worker answers (it then consumes its queues).

        Raises AssertionError with the log tail if the process exits or ``timeout`` passes.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_alive():
                raise AssertionError(
                    f"worker {self.hostname} exited with code {self.proc.returncode if self.proc else None}"
                    f" before it was ready; log:\n{self.log_tail()}"
                )
            if self.ping(timeout=0.5):
                return self
        raise AssertionError(
            f"worker {self.hostname} not ready after {timeout:g} s; log:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 15.0) -> int | None:
        """Warm shutdown (SIGTERM: finish running tasks, save state); SIGKILL the group after ``timeout``.

        Returns the exit code (None if the worker was never started).
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._killpg(signal.SIGKILL)
                self.proc.wait(5)
        self._killpg(signal.SIGKILL)  # stray pool processes, if any
        return self.proc.returncode

    def kill(self, sig: int = signal.SIGKILL, group: bool = False) -> None:
        """Send ``sig`` to the main process (``group=True``: to the whole process group)."""
        if group:
            self._killpg(sig)
        else:
            self._signal(sig)

    def restart(self, ready_timeout: float = 30.0) -> WorkerProcess:
        """:meth:`stop`, then start again with the same name and arguments, and wait until ready."""
        self.stop()
        return self.start().wait_ready(ready_timeout)

    def cleanup(self) -> None:
        """SIGKILL the whole process group and reap it (used at teardown).

        A warm shutdown takes 1-3 s per worker and proves nothing at teardown (the test's db
        is flushed next); call :meth:`stop` in the test when a clean shutdown matters.
        """
        if self.proc is None:
            return
        self._killpg(signal.SIGKILL)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def _killpg(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)  # pgid == pid thanks to start_new_session
        except (ProcessLookupError, PermissionError):
            pass

    # ---- observation ----------------------------------------------------------------
    def pool_pids(self) -> list[int]:
        """PIDs of the pool's child processes (prefork; empty for solo/threads)."""
        return child_pids(self.proc.pid) if self.is_alive() and self.proc else []

    def inspect(self, timeout: float = 1.0) -> Any:
        """``app.control.inspect`` limited to this node."""
        return self.app.control.inspect(destination=[self.hostname], timeout=timeout)

    def log_text(self) -> str:
        """Everything the worker has logged so far (all starts)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = 6000) -> str:
        """The last ``chars`` characters of the log."""
        return self.log_text()[-chars:]

    def __repr__(self) -> str:
        state = "running" if self.is_alive() else "stopped"
        return f"<WorkerProcess {self.hostname} pid={self.pid} {state} -Q {','.join(self.queues)}>"
