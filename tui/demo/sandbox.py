"""``afirgen-tui --demo``: a self-contained sandbox cluster the console opens on.

It starts, in a private temp directory:

* a Redis: ``redis-server`` on a free port when one is on PATH, else fakeredis's TCP
  server (with Lua, which Celery's Redis transport needs) in a child process
  (``python -m tui.demo.embedded_redis``);
* a flaky, slow SMTP sink (:class:`SMTPSink`) on a free port, so e-mail jobs take a while and sometimes
  answer ``421`` (transient: the job retries with backoff, as in production);
* a sample FIR database, and two real ``celery worker`` processes on all five queues;
* a job generator publishing a steady mix of jobs at every priority, including ones
  that fail (unknown FIR ids) and ones that retry.

:meth:`Sandbox.stop` stops everything it started and removes the directory.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

DEMO_WORKERS = ("demo-a", "demo-b")
#: Share of the generated jobs that ask for a report on an FIR that does not exist: they
#: fail at once (FAILURE, no retry) — on purpose, so the console has failures to show.
FAILING_REPORT_SHARE = 0.06
#: Share of SMTP sessions the demo mail sink refuses with 421: those e-mail jobs RETRY.
SMTP_REFUSE_RATE = 0.15
#: Share of the generated jobs that send e-mail (through the sink).
EMAIL_SHARE = 0.40
#: Seconds the workers get to finish a job before they are killed when the demo stops.
STOP_GRACE_S = 1.0


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the console dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: Sandbox.stop() and the signal handlers still clean up


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.2),
        ):
            return True
        time.sleep(0.05)
    return False


class _SinkHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP to accept a message, slowly; some sessions are refused with 421."""

    server: SMTPSink

    def _send(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        sink = self.server
        sink.sessions += 1
        if sink.rng.random() < sink.refuse_rate:
            self._send("421 4.3.2 demo sink busy, try again later")
            return
        self._send("220 afirgen-sink ESMTP")
        in_data = False
        while True:
            raw = self.rfile.readline(65536)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if in_data:
                if line == ".":
                    in_data = False
                    time.sleep(sink.rng.uniform(*sink.delay))  # a slow mail relay
                    sink.delivered += 1
                    self._send("250 2.0.0 queued")
                continue
            verb = line[:4].upper()
            if verb in ("HELO", "EHLO"):
                self._send("250 afirgen-sink")
            elif verb == "DATA":
                in_data = True
                self._send("354 end with .")
            elif verb == "QUIT":
                self._send("221 bye")
                return
            else:
                self._send("250 ok")


class SMTPSink(socketserver.ThreadingTCPServer):
    """A local SMTP sink on a free port: answers after ``delay`` seconds, refuses ``refuse_rate`` of sessions.

    The demo uses it to make e-mail jobs slow and sometimes retried; tests use it for a
    job that runs long enough to revoke, terminate or kill.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        delay: tuple[float, float] = (0.3, 3.0),
        refuse_rate: float = SMTP_REFUSE_RATE,
        seed: int | None = None,
    ):
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.delay = delay
        self.refuse_rate = refuse_rate
        self.rng = random.Random(seed)
        self.sessions = 0
        self.delivered = 0

    @property
    def port(self) -> int:
        return self.server_address[1]

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up mid-session (a worker stopped with the demo, a job killed)
        is no error: socketserver would print its traceback over the operator's shell."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]

    def start(self) -> SMTPSink:
        """Serve in a daemon thread."""
        threading.Thread(target=self.serve_forever, name="afirgen-smtp-sink", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()


class Sandbox:
    """The demo cluster; use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(self, workers: int = 2, jobs_per_second: float = 3.0):
        self.dir = Path(tempfile.mkdtemp(prefix="afirgen-demo-"))
        self.n_workers = workers
        self.jobs_per_second = jobs_per_second
        self.redis_kind = ""
        self.redis_port = 0
        self.env: dict[str, str] = {}
        self._redis_proc: subprocess.Popen[bytes] | None = None
        self._smtp: SMTPSink | None = None
        self._workers: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()
        self._generator: threading.Thread | None = None
        self.jobs_sent = 0
        #: publishes that failed (the sandbox broker restarting), and the last reason
        self.send_errors = 0
        self.last_send_error = ""

    @staticmethod
    def failure_note() -> str:
        """What the sandbox breaks on purpose, for the banner (so its failures are not read
        as real ones)."""
        every = round(1 / FAILING_REPORT_SHARE)
        return (
            f"failures are injected on purpose: about 1 job in {every} is generate_pdf_report "
            f"for an FIR that does not exist (FAILURE), and the demo mail sink refuses "
            f"~{SMTP_REFUSE_RATE:.0%} of e-mails with 421 (send_* e-mail jobs RETRY)"
        )

    # ---- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, progress: Any = None) -> None:
        """Start Redis, the SMTP sink, the workers and the job generator."""
        say = progress or (lambda msg: None)
        try:
            say("starting Redis")
            self._start_redis()
            self._start_smtp()
            self._write_env()
            say("creating the sample FIR database")
            self._seed()
            say("starting workers")
            self._start_workers()
            self._generator = threading.Thread(
                target=self._generate, name="afirgen-demo-jobs", daemon=True
            )
            self._generator.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop everything started, leave no processes or files behind (idempotent)."""
        self._stop.set()
        # the mail sink's serve loop takes up to half a second to notice: meanwhile, the workers
        smtp, self._smtp = self._smtp, None
        smtp_stopped = threading.Thread(target=smtp.stop, daemon=True) if smtp else None
        if smtp_stopped is not None:
            smtp_stopped.start()
        # Every worker is told at once and they share one short deadline (they were stopped
        # one after another, each waiting out its running job: 5-6 s to get the shell back);
        # a demo job is not worth waiting for.
        _terminate_all(self._workers, grace=STOP_GRACE_S)
        self._workers.clear()
        if self._generator is not None:
            self._generator.join(timeout=1)
        if smtp_stopped is not None:
            smtp_stopped.join(timeout=2)
        if self._redis_proc is not None:
            _terminate_all([self._redis_proc], grace=1.0)
            self._redis_proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- pieces ------------------------------------------------------------------------
    def _start_redis(self) -> None:
        self.redis_port = free_port()
        binary = shutil.which("redis-server")
        if binary and not os.environ.get("AFIRGEN_DEMO_FAKEREDIS"):
            self._redis_proc = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(self.redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.dir),
                    "--logfile",
                    str(self.dir / "redis.log"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            self.redis_kind = "redis-server"
        else:
            # no redis-server: fakeredis over TCP (with Lua), in a child process of its own
            self._redis_proc = subprocess.Popen(
                [sys.executable, "-m", "tui.demo.embedded_redis", "--port", str(self.redis_port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            self.redis_kind = "embedded fakeredis"
        if not _wait_port(self.redis_port, 10):
            raise RuntimeError(
                f"the demo Redis ({self.redis_kind}) did not start on port {self.redis_port}"
            )

    def _start_smtp(self) -> None:
        self._smtp = SMTPSink().start()

    def _write_env(self) -> None:
        config = self.dir / "config.toml"
        config.write_text(
            "# afirgen-tui --demo sandbox: everything else is the default\n", encoding="utf-8"
        )
        assert self._smtp is not None
        self.env = {
            "AFIRGEN_CONFIG": str(config),
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:{self.redis_port}/1",
            "CELERY_WORKER_CONCURRENCY": "2",
            "CELERY_WORKER_PREFETCH_MULTIPLIER": "1",
            "CELERY_TASK_RETRY_BACKOFF_MAX": "8",
            "AFIRGEN_PATHS_DATA_DIR": str(self.dir / "data"),
            "AFIRGEN_PATHS_REPORT_DIR": str(self.dir / "reports"),
            "AFIRGEN_PATHS_OUTBOX_DIR": str(self.dir / "outbox"),
            "AFIRGEN_PATHS_TEMP_DIR": str(self.dir / "tmp"),
            "AFIRGEN_SMTP_HOST": "127.0.0.1",
            "AFIRGEN_SMTP_PORT": str(self._smtp.port),
            "AFIRGEN_SMTP_SECURITY": "none",
            "AFIRGEN_CONSOLE_AUDIT_LOG": str(self.dir / "audit.log"),
            "AFIRGEN_HISTORY_DB": str(self.dir / "history.sqlite3"),
        }

    def settings(self) -> Any:
        """The sandbox's settings (what the console and the generator use).

        Built from keyword overrides, never by changing ``os.environ``: the generator thread
        calls this while the console starts.
        """
        from afirgen_tasks.settings import fields_from_env, load_settings

        return load_settings(self.env["AFIRGEN_CONFIG"], **fields_from_env(self.env))

    def _seed(self) -> None:
        from afirgen_tasks.records import create_sample_db

        settings = self.settings()
        settings.ensure_dirs()
        create_sample_db(settings.fir_db_path, count=300, seed=7)

    def _start_workers(self) -> None:
        env = {**os.environ, **self.env}
        for name in DEMO_WORKERS[: self.n_workers]:
            log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "afirgen_tasks.celery_app",
                    "worker",
                    "-n",
                    f"{name}@%h",
                    "-l",
                    "INFO",
                    "--without-mingle",
                    "--without-gossip",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.dir,
                preexec_fn=_die_with_parent,
            )
            log.close()
            self._workers.append(proc)

    # runs in the generator thread
    def _generate(self) -> None:
        from afirgen_tasks.factory import create_app

        app = create_app(self.settings(), main="afirgen-demo")
        rng = random.Random(11)
        fir_ids = list(range(1, 301))  # the sample set has ids 1..300
        while not self._stop.is_set():
            try:
                self._send_one(app, rng, fir_ids)
                self.jobs_sent += 1
            except Exception as exc:  # the sandbox broker restarting: count it and keep going
                self.send_errors += 1
                self.last_send_error = f"{type(exc).__name__}: {exc}"[:200]
            self._stop.wait(rng.expovariate(self.jobs_per_second))

    @staticmethod
    def _send_one(app: Any, rng: random.Random, fir_ids: list[int]) -> None:
        fir = rng.choice(fir_ids)
        priority = rng.randint(1, 10)
        roll = rng.random()
        # the shares below add up to EMAIL_SHARE (0.40) and FAILING_REPORT_SHARE (0.06)
        if roll < 0.30:
            app.send_task(
                "afirgen_tasks.email.send_fir_confirmation_email",
                args=[fir, f"citizen{rng.randint(1, 999)}@example.in"],
                priority=priority,
            )
        elif roll < 0.40:
            app.send_task(
                "afirgen_tasks.email.send_notification_email",
                args=[
                    f"officer{rng.randint(1, 99)}@police.example.in",
                    f"Update on FIR {fir}",
                    "Status changed.",
                ],
                priority=priority,
            )
        elif roll < 0.60:
            app.send_task(
                "afirgen_tasks.reports.generate_pdf_report", args=[fir], priority=priority
            )
        elif roll < 0.60 + FAILING_REPORT_SHARE:
            # an FIR that does not exist: fails at once, no retry
            app.send_task(
                "afirgen_tasks.reports.generate_pdf_report",
                args=[rng.randint(90_000, 99_999)],
                priority=priority,
            )
        elif roll < 0.74:
            app.send_task(
                "afirgen_tasks.reports.generate_excel_report",
                args=[rng.sample(fir_ids, 20)],
                priority=priority,
            )
        elif roll < 0.84:
            app.send_task("afirgen_tasks.analytics.update_dashboard_stats", priority=priority)
        elif roll < 0.90:
            app.send_task(
                "afirgen_tasks.analytics.process_analytics_data",
                args=["2024-01-01", "2024-12-31"],
                priority=priority,
            )
        elif roll < 0.94:
            app.send_task("afirgen_tasks.cleanup.clear_expired_cache", priority=priority)
        elif roll < 0.97:
            app.send_task("afirgen_tasks.cleanup.cleanup_temp_files", priority=priority)
        else:
            app.send_task(
                "afirgen_tasks.cleanup.archive_old_records", kwargs={"days": 365}, priority=priority
            )


def _terminate_all(procs: list[subprocess.Popen[bytes]], grace: float) -> None:
    """SIGTERM every process group at once, wait up to ``grace`` seconds for all of them
    together, then SIGKILL the groups still there (a worker's pool children too)."""
    alive = [p for p in procs if p.poll() is None]
    for proc in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in alive:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.0, deadline - time.monotonic()))
    late = [p for p in alive if p.poll() is None]
    for proc in late:
        # the whole group: the worker's pool processes go with it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    for proc in late:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(3)
