"""Event receivers side by side at fixed flood rates (issue 17).

    python -m bench.bench_receiver --rates 5000 10000 20000 --seconds 10

For each rate, back to back, each in a fresh child process against the bench's own
``redis-server``, fed by ``bench/flood.py`` (Celery's wire format, 200 workers):

* ``kombu``: the console's receiver until issue 17 (:class:`tui.sources.events.EventReceiverThread`,
  Celery's ``EventReceiver`` on kombu, with the validation boundary);
* ``celery``: Celery's own ``app.events.Receiver`` feeding ``celery.events.state.State``
  in its handler, as Flower does (no validation);
* ``redis``: :class:`tui.sources.redis_events.RedisEventReceiverThread` (a PSUBSCRIBE
  read by redis-py/hiredis, two ``json.loads``, the same validation boundary);
* ``redis-proc``: the same reader in a process of its own, handing over pickled batches
  every 20 ms (:class:`tui.sources.event_process.ProcessEventReceiver`, the console's
  default on Redis): a socket thread that only reads, the decoding and validation in the
  process's main thread.

For the receivers with a buffer, a second thread plays the UI: every 0.25 s it drains
the buffer (budget 20,000) into a real :class:`tui.core.model.ClusterModel`.  ``State``
is applied in the receiver's handler.  Columns:

* ``recv``: events taken off the wire within 2 s of the flood's end, as % of published;
* ``applied``: events applied to the model within 2 s of the end, as % of published;
* ``dropped``: buffer overflow; ``invalid``: skipped by the boundary;
* ``lag``: wall clock when applied minus the event's ``timestamp`` (every 8th event);
* ``cpu/ev``: CPU time of the child (all threads, and the receiver subprocess if any)
  from the flood's start to 2 s after its end, per event received; ``recv/ev`` the same
  for the receiving thread alone (psutil per-thread times).  CPU time holds up on a
  loaded machine better than the rates do.

Run by hand, never in CI.  The machine's load average is printed with each row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("kombu", "celery", "redis", "redis-proc")
TICK_S = 0.25
BUDGET = 20_000


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def thread_cpu(native_id: int | None) -> float:
    import psutil

    if native_id is None:
        return float("nan")
    for t in psutil.Process().threads():
        if t.id == native_id:
            return t.user_time + t.system_time
    return float("nan")


def make_app(url: str) -> Any:
    os.environ["AFIRGEN_CELERY_BROKER_URL"] = url
    os.environ["AFIRGEN_CELERY_RESULT_BACKEND"] = url
    from afirgen_tasks.factory import create_app
    from afirgen_tasks.settings import Settings

    return create_app(Settings(celery_broker_url=url, celery_result_backend=url))


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One receiver, one rate: start it, flood, wait 2 s, report (runs in its own process)."""
    import psutil

    app = make_app(args.url)
    lags: list[float] = []
    applied = [0]
    recv_native: list[int | None] = [None]
    receiver: Any = None
    state: Any = None
    ready = threading.Event()
    stop = threading.Event()
    proc = psutil.Process()

    def record(events: list[dict[str, Any]]) -> None:
        now = time.time()
        for ev in events[::8]:
            ts = ev.get("timestamp")
            if ts.__class__ is float:
                lags.append(now - ts)
        applied[0] += len(events)

    if args.kind == "celery":
        from celery.events.state import State

        state = State(max_tasks_in_memory=100_000, max_workers_in_memory=5000)
        got = [0]

        def on_event(ev: dict[str, Any]) -> None:
            state.event(ev)
            got[0] += 1
            if got[0] % 8 == 0:
                lags.append(time.time() - ev["timestamp"])
            applied[0] += 1

        conn = app.connection_for_read()
        celery_receiver = app.events.Receiver(conn, handlers={"*": on_event})
        orig = celery_receiver.on_consume_ready

        def on_ready(*a: Any, **kw: Any) -> None:
            orig(*a, **kw)
            ready.set()

        celery_receiver.on_consume_ready = on_ready  # type: ignore[method-assign]

        def run_celery() -> None:
            recv_native[0] = threading.get_native_id()
            try:
                celery_receiver.capture(limit=None, timeout=None, wakeup=False)
            except Exception as exc:  # noqa: BLE001 - reported, the bench goes on
                print(f"celery receiver stopped: {exc!r}", file=sys.stderr)

        thread = threading.Thread(target=run_celery, daemon=True)
        thread.start()
        received = lambda: got[0]  # noqa: E731
        dropped = invalid = cuts = lambda: 0  # noqa: E731
    else:
        from tui.core.model import ClusterModel

        if args.kind == "kombu":
            from tui.sources.events import EventReceiverThread

            receiver = EventReceiverThread(app, buffer_size=args.buffer)
        elif args.kind == "redis":
            from tui.sources.redis_events import RedisEventReceiverThread

            receiver = RedisEventReceiverThread(app, buffer_size=args.buffer)
        else:
            from tui.sources.event_process import ProcessEventReceiver

            receiver = ProcessEventReceiver(app, buffer_size=args.buffer)
        model = ClusterModel(max_tasks=100_000)
        receiver.start()

        def ui() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                batch = receiver.drain(BUDGET)
                if batch:
                    model.apply(batch)
                    record(batch)
                time.sleep(max(0.0, TICK_S - (time.perf_counter() - t0)))

        ui_thread = threading.Thread(target=ui, daemon=True)
        ui_thread.start()
        deadline = time.monotonic() + 30
        while receiver.status.state != "connected" and time.monotonic() < deadline:
            time.sleep(0.05)
        ready.set()
        received = lambda: receiver.received  # noqa: E731
        cuts = lambda: receiver.status.connects - 1  # noqa: E731
        dropped = lambda: receiver.dropped  # noqa: E731
        invalid = lambda: receiver.invalid  # noqa: E731
    if not ready.wait(30):
        raise SystemExit("receiver never connected")
    if args.kind in ("kombu", "redis"):
        recv_native[0] = getattr(receiver, "native_id", None)
    time.sleep(0.3)
    cpu0 = proc.cpu_times()
    child_cpu0 = receiver.child_cpu() if hasattr(receiver, "child_cpu") else 0.0
    rcpu0 = thread_cpu(recv_native[0])
    flood = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.flood",
            "--url",
            args.url,
            "--rate",
            str(args.rate),
            "--seconds",
            str(args.seconds),
            "--workers",
            str(args.workers),
            "--group",
            str(args.group),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(flood.stdout)
    ended = time.monotonic()
    time.sleep(max(0.0, ended + 2.0 - time.monotonic()))
    got, done = received(), applied[0]
    cpu1 = proc.cpu_times()
    rcpu1 = thread_cpu(recv_native[0])
    child_cpu1 = receiver.child_cpu() if hasattr(receiver, "child_cpu") else 0.0
    stop.set()
    if receiver is not None:
        receiver.stop()
    rss = proc.memory_info().rss
    return {
        "kind": args.kind,
        "rate": args.rate,
        "pub_rate": report["achieved_rate"],
        "published": report["published"],
        "received": got,
        "applied": done,
        "dropped": dropped(),
        "invalid": invalid(),
        "cuts": cuts(),
        "lag_p50": pct(lags, 0.5),
        "lag_p99": pct(lags, 0.99),
        "lag_max": max(lags) if lags else float("nan"),
        # CPU from the flood's start to 2 s after its end, per event received
        "cpu_us": 1e6
        * (cpu1.user + cpu1.system - cpu0.user - cpu0.system + child_cpu1 - child_cpu0)
        / max(got, 1),
        "recv_cpu_us": 1e6
        * ((rcpu1 - rcpu0) if recv_native[0] else (child_cpu1 - child_cpu0))
        / max(got, 1),
        "rss_mb": rss / 2**20,
        "load": os.getloadavg()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[5000, 10000, 20000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument(
        "--group",
        type=int,
        default=1,
        help="most worker events per message (1: every event its own message, the worst case)",
    )
    parser.add_argument("--buffer", type=int, default=50_000, help="receiver buffer (events)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument(
        "--hogs", type=int, default=0, help="busy-loop processes running during each run (load)"
    )
    parser.add_argument("--child", dest="kind", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kind:
        print(json.dumps(child(args)), flush=True)
        return 0

    from bench.redis_spawn import start_redis

    tmp = Path(tempfile.mkdtemp(prefix="bench-receiver-"))
    server, url = start_redis(tmp)
    print(f"$ python -m bench.bench_receiver {' '.join(sys.argv[1:])}")
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.workers} workers, "
        f"{args.seconds:g} s per run, buffer {args.buffer:,}, worker events per message <= {args.group}"
        f"{f', {args.hogs} busy-loop processes' if args.hogs else ''}"
    )
    head = (
        f"{'receiver':>10} {'rate/s':>7} {'pub/s':>7} {'recv':>7} {'applied':>8} {'dropped':>8} "
        f"{'invalid':>7} {'cuts':>4} {'lag p50':>8} {'p99':>7} {'max':>7} {'cpu/ev':>7} {'recv/ev':>7} "
        f"{'RSS':>6} {'load':>5}"
    )
    print(head)
    try:
        for rate in args.rates:
            for kind in args.kinds:
                # busy loops for the whole run: a loaded machine, the same for every kind
                hogs = [
                    subprocess.Popen([sys.executable, "-c", "while True: pass"])
                    for _ in range(args.hogs)
                ]
                try:
                    out = subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "bench.bench_receiver",
                            "--child",
                            kind,
                            "--url",
                            url,
                            "--rate",
                            str(rate),
                            "--seconds",
                            str(args.seconds),
                            "--workers",
                            str(args.workers),
                            "--buffer",
                            str(args.buffer),
                            "--group",
                            str(args.group),
                        ],
                        cwd=ROOT,
                        capture_output=True,
                        text=True,
                    )
                finally:
                    for hog in hogs:
                        hog.kill()
                        hog.wait()
                if out.returncode:
                    print(f"{kind:>10} {rate:>7} failed: {out.stderr[-500:]}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                pub = r["published"]
                print(
                    f"{kind:>10} {rate:>7} {r['pub_rate']:>7.0f} "
                    f"{100 * r['received'] / pub:>6.1f}% {100 * r['applied'] / pub:>7.1f}% "
                    f"{r['dropped']:>8,} {r['invalid']:>7,} {r['cuts']:>4} {r['lag_p50']:>7.2f}s "
                    f"{r['lag_p99']:>6.2f}s {r['lag_max']:>6.2f}s {r['cpu_us']:>5.0f}us "
                    f"{r['recv_cpu_us']:>5.0f}us {r['rss_mb']:>5.0f}M {r['load']:>5.1f}",
                    flush=True,
                )
    finally:
        server.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
