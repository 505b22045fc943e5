"""A synthetic, deterministic stream of Celery event dicts for the benchmarks.

The events have the shape ``celery.events.Receiver`` delivers: the fields Celery 5
publishes per event type, plus ``local_received``, and they went through a JSON
round trip (every string is a fresh object, as after kombu's deserialisation).

The simulated cluster: 20 workers (``celery@afirgen-worker-01``...; ``workers=`` asks
for more, named ``-001``...) heart-beating every 2 s, producers on the API hosts sending
AFIRGen tasks (e-mails, FIR PDFs, XLSX exports, analytics, cleanup) at ``rate`` tasks/s
with the operator priority on ``task-sent``; queue waits, runtimes, retries (SMTP
hiccups), failures with real looking tracebacks, a few revokes, expiries and rejections.
Events arrive in ``local_received`` order, so a worker's ``task-received`` can overtake
the client's ``task-sent`` as it does on a real broker.

    from bench.events import generate_events, iter_batches
    events = generate_events(400_000, seed=1)        # a list
    for batch in iter_batches(400_000, 2000, seed=1):  # lists of fresh dicts
        ...
"""

from __future__ import annotations

import heapq
import json
import random
import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

__all__ = [
    "TASK_TYPES",
    "WORKERS",
    "generate_events",
    "iter_batches",
    "iter_events",
    "worker_names",
]

START = 1_700_000_000.0

WORKERS: tuple[str, ...] = tuple(f"celery@afirgen-worker-{i:02d}" for i in range(1, 21))


def worker_names(n: int) -> tuple[str, ...]:
    """``n`` worker hostnames: :data:`WORKERS` up to 20, ``celery@afirgen-worker-001``... past it."""
    if n <= len(WORKERS):
        return WORKERS[:n]
    return tuple(f"celery@afirgen-worker-{i:03d}" for i in range(1, n + 1))


PRODUCERS: tuple[str, ...] = tuple(
    f"gen{pid}@afirgen-api-{n}" for n in (1, 2, 3) for pid in (311, 312)
)

# name, queue, default priority, weight, runtime (lo, hi) s, fail p, retry p
TASK_TYPES: tuple[tuple[str, str, int, int, tuple[float, float], float, float], ...] = (
    ("afirgen_tasks.email.send_fir_acknowledgement", "email", 3, 30, (0.08, 0.9), 0.01, 0.05),
    ("afirgen_tasks.email.send_status_update", "email", 3, 20, (0.08, 0.7), 0.01, 0.04),
    ("afirgen_tasks.reports.generate_fir_pdf", "reports", 5, 20, (0.4, 4.0), 0.02, 0.0),
    ("afirgen_tasks.reports.export_station_xlsx", "reports", 5, 5, (2.0, 9.0), 0.03, 0.0),
    ("afirgen_tasks.analytics.aggregate_station_stats", "analytics", 2, 10, (0.5, 5.0), 0.01, 0.0),
    ("afirgen_tasks.analytics.update_crime_heatmap", "analytics", 2, 5, (1.0, 6.0), 0.02, 0.01),
    ("afirgen_tasks.cleanup.purge_expired_drafts", "cleanup", 1, 3, (0.2, 3.0), 0.0, 0.0),
    ("afirgen_tasks.reliability.ping", "default", 5, 7, (0.001, 0.01), 0.0, 0.0),
)

STATIONS = ("MUM", "PUN", "NGP", "DEL", "BLR", "HYD", "CHN", "KOL", "LKO", "JPR")
FIRST = (
    "anita",
    "rahul",
    "priya",
    "vikram",
    "sunita",
    "arjun",
    "meena",
    "farhan",
    "kavya",
    "rohit",
)
LAST = ("sharma", "patil", "iyer", "khan", "reddy", "das", "gupta", "nair", "joshi", "singh")
DOMAINS = ("gmail.com", "yahoo.co.in", "outlook.com", "rediffmail.com", "example.in")

_SMTP_TB = """Traceback (most recent call last):
  File "/srv/afirgen/.venv/lib/python3.11/site-packages/celery/app/trace.py", line 453, in trace_task
    R = retval = fun(*args, **kwargs)
                 ^^^^^^^^^^^^^^^^^^^^
  File "/srv/afirgen/.venv/lib/python3.11/site-packages/celery/app/trace.py", line 736, in __protected_call__
    return self.run(*args, **kwargs)
           ^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/srv/afirgen/afirgen_tasks/base.py", line 88, in run
    return fn(self, *args, **kwargs)
           ^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/srv/afirgen/afirgen_tasks/email.py", line {line}, in {func}
    smtp.send_message(message)
  File "/usr/lib/python3.11/smtplib.py", line 986, in send_message
    return self.sendmail(from_addr, to_addrs, flatmsg, mail_options,
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/lib/python3.11/smtplib.py", line 887, in sendmail
    (code, resp) = self.mail(from_addr, esmtp_opts)
                   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/lib/python3.11/smtplib.py", line 539, in mail
    return self.getreply()
           ^^^^^^^^^^^^^^^
  File "/usr/lib/python3.11/smtplib.py", line 405, in getreply
    raise SMTPServerDisconnected("Connection unexpectedly closed")
smtplib.SMTPServerDisconnected: Connection unexpectedly closed
"""

_REPORT_TB = """Traceback (most recent call last):
  File "/srv/afirgen/.venv/lib/python3.11/site-packages/celery/app/trace.py", line 453, in trace_task
    R = retval = fun(*args, **kwargs)
                 ^^^^^^^^^^^^^^^^^^^^
  File "/srv/afirgen/.venv/lib/python3.11/site-packages/celery/app/trace.py", line 736, in __protected_call__
    return self.run(*args, **kwargs)
           ^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/srv/afirgen/afirgen_tasks/base.py", line 88, in run
    return fn(self, *args, **kwargs)
           ^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/srv/afirgen/afirgen_tasks/{module}.py", line {line}, in {func}
    record = records.fetch_fir(conn, fir_id)
             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/srv/afirgen/afirgen_tasks/records.py", line 142, in fetch_fir
    raise LookupError(f"FIR {{fir_id}} not found")
LookupError: FIR {fir} not found
"""


def _fir(rng: random.Random) -> str:
    return f"FIR-2024-{rng.choice(STATIONS)}-{rng.randrange(1, 999_999):06d}"


def _email(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)}.{rng.choice(LAST)}{rng.randrange(100)}@{rng.choice(DOMAINS)}"


def _args_kwargs(rng: random.Random, name: str, fir: str) -> tuple[str, str]:
    if ".email." in name:
        return (
            repr((fir,)),
            repr(
                {
                    "recipient": _email(rng),
                    "language": rng.choice(("en", "hi", "mr")),
                    "template": name.rpartition(".")[2],
                }
            ),
        )
    if "generate_fir_pdf" in name:
        return repr((fir,)), repr({"include_annexures": rng.random() < 0.3, "watermark": "AFIRGen"})
    if "export_station_xlsx" in name:
        return repr((f"PS-{rng.randrange(1, 900):04d}", "2024-10-01", "2024-10-31")), "{}"
    if "analytics" in name:
        return repr((f"PS-{rng.randrange(1, 900):04d}",)), repr(
            {"window_days": rng.choice((7, 30, 90))}
        )
    if "cleanup" in name:
        return "()", repr({"older_than_days": 30, "dry_run": False})
    return "()", "{}"


def _result(rng: random.Random, name: str, fir: str) -> str:
    if ".email." in name:
        return repr({"status": "sent", "message_id": f"<{rng.getrandbits(48):x}@afirgen.gov.in>"})
    if "generate_fir_pdf" in name:
        return repr(
            {
                "status": "ok",
                "path": f"/var/afirgen/reports/{fir}.pdf",
                "pages": rng.randrange(1, 9),
                "bytes": rng.randrange(20_000, 400_000),
            }
        )
    if "export_station_xlsx" in name:
        return repr({"status": "ok", "rows": rng.randrange(10, 5000)})
    if "analytics" in name:
        return repr({"status": "ok", "cases": rng.randrange(0, 800)})
    if "cleanup" in name:
        return repr({"deleted": rng.randrange(0, 60)})
    return "'pong'"


def _failure(rng: random.Random, name: str, fir: str) -> tuple[str, str]:
    func = name.rpartition(".")[2]
    if ".email." in name:
        return (
            "SMTPServerDisconnected('Connection unexpectedly closed')",
            _SMTP_TB.format(line=rng.randrange(40, 120), func=func),
        )
    module = name.split(".")[1]
    return (
        f"LookupError('FIR {fir} not found')",
        _REPORT_TB.format(module=module, line=rng.randrange(40, 200), func=func, fir=fir),
    )


def iter_events(
    seed: int = 0, *, rate: float = 200.0, workers: int = 20, start: float = START
) -> Iterator[dict[str, Any]]:
    """An endless, deterministic stream of event dicts (not JSON round-tripped)."""
    rng = random.Random(seed)
    hosts = WORKERS[:workers] if workers <= len(WORKERS) else worker_names(workers)
    names = [t for t in TASK_TYPES]
    weights = [t[3] for t in TASK_TYPES]
    heap: list[tuple[float, int, dict[str, Any]]] = []
    seq = 0
    clock = 0
    processed = dict.fromkeys(hosts, 0)
    active = dict.fromkeys(hosts, 0)
    pids = {h: 4000 + i * 17 for i, h in enumerate(hosts)}

    def push(arrival: float, ev: dict[str, Any]) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(heap, (arrival, seq, ev))

    def worker_event(kind: str, host: str, t: float) -> dict[str, Any]:
        return {
            "hostname": host,
            "utcoffset": 0,
            "pid": pids[host],
            "clock": 0,
            "freq": 2.0,
            "sw_ident": "py-celery",
            "sw_ver": "5.7.0",
            "sw_sys": "Linux",
            "active": active[host],
            "processed": processed[host],
            "loadavg": [round(rng.uniform(0.2, 3.5), 2) for _ in range(3)],
            "timestamp": t,
            "type": kind,
        }

    for i, host in enumerate(hosts):
        t = start + i * 0.01
        push(t + 0.003, worker_event("worker-online", host, t))
        push(t + 2.0 + 0.003, {"type": "_beat", "hostname": host, "timestamp": t + 2.0})

    def schedule_task(t0: float) -> None:
        name, queue, prio, _w, (lo, hi), p_fail, p_retry = rng.choices(names, weights)[0]
        if rng.random() < 0.05:
            prio = rng.randrange(8, 11)  # an operator bumped it
        task_id = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
        producer = rng.choice(PRODUCERS)
        fir = _fir(rng)
        args, kwargs = _args_kwargs(rng, name, fir)
        expires = None
        if ".reliability." in name:
            expires = "2023-11-14T22:20:00+00:00"
        common = {
            "uuid": task_id,
            "root_id": task_id,
            "parent_id": None,
            "name": name,
            "args": args,
            "kwargs": kwargs,
            "eta": None,
            "expires": expires,
        }

        def sent(t: float, retries: int) -> None:
            ev = {
                "hostname": producer,
                "utcoffset": 0,
                "pid": 311,
                "clock": 0,
                "queue": queue,
                "exchange": "",
                "routing_key": queue,
                "priority": prio,
                "retries": retries,
                "timestamp": t,
                "type": "task-sent",
                **common,
            }
            push(t + rng.uniform(0.002, 0.02), ev)

        def worker_task_event(kind: str, host: str, t: float, **fields: Any) -> None:
            ev = {
                "hostname": host,
                "utcoffset": 0,
                "pid": pids[host],
                "clock": 0,
                "uuid": task_id,
                "timestamp": t,
                "type": kind,
                **fields,
            }
            push(t + rng.uniform(0.002, 0.03), ev)

        sent(t0, 0)
        t = t0
        for attempt in range(4):
            t += rng.expovariate(1 / 0.3)  # queue wait
            host = rng.choice(hosts)
            if rng.random() < 0.001:
                worker_task_event(
                    "task-revoked",
                    host,
                    t,
                    terminated=False,
                    signum=None,
                    expired=expires is not None,
                )
                return
            worker_task_event(
                "task-received",
                host,
                t,
                name=name,
                args=args,
                kwargs=kwargs,
                root_id=task_id,
                parent_id=None,
                retries=attempt,
                eta=None,
                expires=expires,
            )
            if rng.random() < 0.0005:
                worker_task_event("task-rejected", host, t + 0.001, requeue=False)
                return
            t += rng.uniform(0.0005, 0.01)
            worker_task_event("task-started", host, t)
            runtime = rng.uniform(lo, hi)
            t += runtime
            roll = rng.random()
            if roll < p_retry and attempt < 3:
                exc, tb = _failure(rng, name, fir)
                countdown = 2.0**attempt
                sent(t - 0.0005, attempt + 1)  # retry() re-sends first, then the worker reports
                worker_task_event(
                    "task-retried",
                    host,
                    t,
                    exception=f"Retry in {countdown:.0f}s: {exc}",
                    traceback=tb,
                )
                t += countdown
                continue
            if roll < p_retry + p_fail or attempt == 3:
                exc, tb = _failure(rng, name, fir)
                worker_task_event("task-failed", host, t, exception=exc, traceback=tb)
            else:
                worker_task_event(
                    "task-succeeded", host, t, result=_result(rng, name, fir), runtime=runtime
                )
            processed[host] += 1
            return

    next_send = start + 0.5
    while True:
        if next_send <= heap[0][0]:
            schedule_task(next_send)
            next_send += rng.expovariate(rate)
            continue
        arrival, _, ev = heapq.heappop(heap)
        if ev["type"] == "_beat":
            host, t = ev["hostname"], ev["timestamp"]
            push(t + 2.0 + 0.003, {"type": "_beat", "hostname": host, "timestamp": t + 2.0})
            ev = worker_event("worker-heartbeat", host, t)
        clock += 1
        ev["clock"] = clock
        ev["local_received"] = arrival
        yield ev


def iter_batches(
    n_events: int = 400_000, batch: int = 2000, seed: int = 0, **options: Any
) -> Iterator[list[dict[str, Any]]]:
    """``n_events`` events in lists of ``batch``, each list JSON round-tripped."""
    stream = iter_events(seed, **options)
    left = n_events
    while left > 0:
        size = min(batch, left)
        chunk = [next(stream) for _ in range(size)]
        yield json.loads(json.dumps(chunk))
        left -= size


def generate_events(n_events: int = 400_000, seed: int = 0, **options: Any) -> list[dict[str, Any]]:
    """The first ``n_events`` events of the stream for ``seed``, as one list."""
    out: list[dict[str, Any]] = []
    for chunk in iter_batches(n_events, 5000, seed, **options):
        out.extend(chunk)
    return out
