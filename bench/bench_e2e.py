"""End to end: Celery events on a real Redis -> the headless console, at fixed rates.

    python -m bench.bench_e2e                          # 1k, 5k, 10k events/s, 15 s each (~2 min)
    python -m bench.bench_e2e --rates 5000 --seconds 30 --buffer 20000

Starts its own ``redis-server`` on a free port (or uses ``--url``, which must point at an
empty scratch database), runs the real console — :class:`tui.ui.app.AfirgenApp` with
:class:`tui.sources.cluster.BrokerSources`, its receiver thread and its own timers — under
``run_test(headless=True, size=(120, 40))`` in this process, and for each rate starts
``bench/publisher.py`` (Celery's event dispatcher, a separate process) for ``--seconds``.

What is measured, per rate:

* **applied/s**: ``app.console_screen.events_applied`` over the publishing window, and until the buffer
  is drained;
* **lag**: wall clock when ``app.model.apply`` returned minus the event's ``timestamp``
  (the publisher's wall clock at send time), every 8th event of every batch;
* **dropped**: ``sources.dropped`` (receiver buffer full, shown on the status line) and the
  pub/sub gap: events published minus events the receiver took off the wire;
* **key-press-to-screen**: 150-350 ms after the last one showed, a ``down`` or ``up`` goes
  to the focused Tasks pane as a terminal's key does (the driver posts it; ``pilot.press``
  waited for the app to go idle, up to 2 s under a flood, so earlier runs pressed ~60 keys
  a minute); the latency runs from just before the key is posted until the end of the
  first compositor frame (``App._display``) after the pane's cursor action ran, and the
  part until the action ran is given apart.  Headless Textual skips turning a frame into terminal bytes, so the bench does that
  too (``render_segments``), as a real terminal would need — only the write is missing;
* **tick**: ``ConsoleScreen.tick`` wall time (drain + apply + pane updates);
* **RSS**: whole-process resident memory (psutil), sampled every 0.5 s.

Run by hand; never in CI.  Needs psutil in the venv (``pip install psutil``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.redis_spawn import start_redis  # noqa: E402


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


def environ(broker: str, tmp: Path) -> None:
    for k in [k for k in os.environ if k.startswith(("CELERY_", "AFIRGEN_"))]:
        del os.environ[k]
    (tmp / "config.toml").write_text("")
    os.environ.update(
        CELERY_BROKER_URL=broker,
        CELERY_RESULT_BACKEND=broker,
        AFIRGEN_CONFIG=str(tmp / "config.toml"),
        AFIRGEN_PATHS_DATA_DIR=str(tmp / "var"),
        AFIRGEN_PATHS_REPORT_DIR=str(tmp / "var/reports"),
        AFIRGEN_PATHS_OUTBOX_DIR=str(tmp / "var/outbox"),
        AFIRGEN_PATHS_TEMP_DIR=str(tmp / "var/tmp"),
        AFIRGEN_CONSOLE_AUDIT_LOG=str(tmp / "var/audit.log"),
        AFIRGEN_HISTORY_DB=str(tmp / "var/history.sqlite3"),
    )


@dataclass
class Probe:
    """Everything the instrumented app records; reset per phase."""

    lags: list[float] = field(default_factory=list)
    lag_times: list[float] = field(default_factory=list)
    ticks_ms: list[float] = field(default_factory=list)
    frames: int = 0
    frame_ms: list[float] = field(default_factory=list)
    key_t0: float | None = None
    key_acted: bool = False
    key_moved: bool = False
    key_ms: list[float] = field(default_factory=list)
    #: of each key_ms: from the press until its action ran (the rest is waiting for a frame)
    key_action_ms: list[float] = field(default_factory=list)
    key_action_t: float | None = None
    key_noop: int = 0
    rss: list[float] = field(default_factory=list)
    #: absorb calls over 20 ms: (wall ms, UI-thread CPU ms, events applied)
    long_absorbs: list[tuple[float, float, int]] = field(default_factory=list)


def make_app_class() -> type:
    import tui.ui.app
    from tui.ui.app import AfirgenApp
    from tui.ui.console import ConsoleScreen

    screen_tick = ConsoleScreen.tick

    def timed_tick(self: Any) -> None:  # the tick is the ConsoleScreen's since the console split
        started = time.perf_counter()
        screen_tick(self)
        self.app.probe.ticks_ms.append((time.perf_counter() - started) * 1000)

    ConsoleScreen.tick = timed_tick  # type: ignore[method-assign]
    screen_absorb = ConsoleScreen.absorb

    def timed_absorb(self: Any, *args: Any, **kwargs: Any) -> int:
        started, cpu = time.perf_counter(), time.thread_time()
        n = screen_absorb(self, *args, **kwargs)
        took = time.perf_counter() - started
        if took > 0.02:  # the long ones: wall, this thread's CPU, events
            self.app.probe.long_absorbs.append((took * 1000, (time.thread_time() - cpu) * 1000, n))
        return n

    ConsoleScreen.absorb = timed_absorb  # type: ignore[method-assign]

    class BenchApp(AfirgenApp):
        """The real console, with timing probes around tick and frame output."""

        CSS_PATH = str(
            Path(tui.ui.app.__file__).with_name("app.tcss")
        )  # relative paths follow the subclass

        probe = Probe()

        def _display(self, screen: Any, renderable: Any) -> None:
            started = time.perf_counter()
            super()._display(screen, renderable)
            if renderable is None or self._batch_count:
                return
            if hasattr(renderable, "render_segments"):
                renderable.render_segments(self.console)  # what a real terminal would be sent
            now = time.perf_counter()
            p = self.probe
            p.frames += 1
            p.frame_ms.append((now - started) * 1000)
            if p.key_t0 is not None and p.key_acted:
                if p.key_moved:
                    p.key_ms.append((now - p.key_t0) * 1000)
                    if p.key_action_t is not None:
                        p.key_action_ms.append((p.key_action_t - p.key_t0) * 1000)
                p.key_t0 = None

    return BenchApp


def instrument(app: Any) -> None:
    """Wrap the model's apply (lag) and the Tasks pane's cursor actions (key latency)."""
    apply = app.model.apply

    def timed_apply(events: Any) -> Any:
        changes = apply(events)
        if events:
            now = time.time()
            lags, times = app.probe.lags, app.probe.lag_times
            for ev in events[::8] if isinstance(events, list) else ():
                ts = ev.get("timestamp")
                if ts.__class__ is float:
                    lags.append(now - ts)
                    times.append(now)
        return changes

    app.model.apply = timed_apply
    pane = app.query_one("#tasks")
    for name in ("action_cursor_down", "action_cursor_up"):
        action = getattr(pane, name)

        def wrapped(action: Any = action) -> None:
            probe = app.probe
            before = pane.cursor_row
            probe.key_action_t = time.perf_counter()
            action()
            probe.key_moved = pane.cursor_row != before
            if not probe.key_moved:
                probe.key_noop += 1
            probe.key_acted = True

        setattr(pane, name, wrapped)


async def sample_rss(probe: Probe, stop: asyncio.Event) -> None:
    proc = psutil.Process()
    while not stop.is_set():
        probe.rss.append(proc.memory_info().rss / 2**20)
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass


async def press_keys(app: Any, pilot: Any, stop: asyncio.Event, rnd: random.Random) -> None:
    from textual import events

    probe = app.probe
    down = True
    while not stop.is_set():
        await asyncio.sleep(rnd.uniform(0.15, 0.35))
        if stop.is_set() or not app.query_one("#tasks").row_count:
            continue
        pane = app.query_one("#tasks")
        if pane.cursor_row <= 0:
            down = True
        elif pane.cursor_row >= pane.row_count - 1:
            down = False
        probe.key_acted = probe.key_moved = False
        probe.key_t0 = time.perf_counter()
        # as a terminal's key arrives (the driver posts it); not pilot.press, which then
        # waits for the app to go idle (up to 2 s under a flood: ~20 presses a run)
        key = events.Key("down" if down else "up", None)
        key.set_sender(app)
        app._driver.send_message(key)
        down = not down
        deadline = time.perf_counter() + 5
        while probe.key_t0 is not None and time.perf_counter() < deadline:
            await asyncio.sleep(0.002)
        probe.key_t0 = None


def status_text(app: Any) -> str:
    from textual.widgets import Static

    return str(app.query_one("#status", Static).content)


async def run_phase(
    app: Any,
    pilot: Any,
    broker: str,
    rate: float,
    seconds: float,
    workers: int,
    worker_buffer: bool,
    settle: float,
    rnd: random.Random,
    flood_group: int = 0,
    publisher_nice: int = 0,
) -> dict[str, Any]:
    probe = app.probe = Probe()
    src = app.sources
    received0, dropped0, applied0 = src.received, src.dropped, app.console_screen.events_applied
    argv = [
        sys.executable,
        "-m",
        "bench.publisher",
        "--url",
        broker,
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        "--workers",
        str(workers),
        "--prefix",
        f"r{int(rate)}-",
    ]
    if flood_group:
        # bench/flood.py: the same wire format from pre-encoded templates (reaches 30k/s+)
        argv[2] = "bench.flood"
        argv += ["--group", str(flood_group)]
    elif not worker_buffer:
        argv.append("--no-worker-buffer")
    stop = asyncio.Event()
    bg = [
        asyncio.create_task(sample_rss(probe, stop)),
        asyncio.create_task(press_keys(app, pilot, stop, rnd)),
    ]
    if publisher_nice:
        argv = ["nice", "-n", str(publisher_nice), *argv]
    t0 = time.perf_counter()
    pub = await asyncio.create_subprocess_exec(*argv, cwd=REPO, stdout=asyncio.subprocess.PIPE)
    out, _ = await pub.communicate()
    t_pub = time.perf_counter() - t0
    applied_pub = app.console_screen.events_applied - applied0
    buffered_at_end = src.buffered
    lag_at_end = statistics.median(probe.lags[-50:]) if probe.lags else float("nan")
    n_lag_pub = len(probe.lags)
    stats = json.loads(out.decode().strip().splitlines()[-1])
    # let the console catch up (or give up: whatever is still buffered is backlog)
    deadline = time.perf_counter() + settle
    last_received, quiet_since = src.received, time.perf_counter()
    applied_2s = None
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
        if applied_2s is None and time.perf_counter() - t0 >= t_pub + 2.0:
            applied_2s = app.console_screen.events_applied - applied0
        if src.received != last_received:
            last_received, quiet_since = src.received, time.perf_counter()
        if not src.buffered and time.perf_counter() - quiet_since > 1.0:
            break
    t_all = time.perf_counter() - t0
    drain_s = t_all - t_pub
    stop.set()
    await asyncio.gather(*bg)
    received = src.received - received0
    lags_pub = probe.lags[:n_lag_pub]
    return {
        "rate": rate,
        "published": stats["published"],
        "pub_rate": stats["achieved_rate"],
        "pub_seconds": stats["seconds"],
        "received": received,
        "gap": stats["published"] - received,
        "dropped": src.dropped - dropped0,
        "applied": app.console_screen.events_applied - applied0,
        # applied within 2 s of the publisher's end, as a share of what it published
        "applied_2s_pct": 100.0
        * (applied_2s if applied_2s is not None else app.console_screen.events_applied - applied0)
        / max(stats["published"], 1),
        "applied_per_s_pub": applied_pub / t_pub,
        "applied_per_s_all": (app.console_screen.events_applied - applied0) / t_all,
        "buffered_at_pub_end": buffered_at_end,
        "still_buffered": src.buffered,
        "drain_s": drain_s,
        "lag_p50": statistics.median(lags_pub) if lags_pub else float("nan"),
        "lag_p99": pct(lags_pub, 99),
        "lag_max": max(lags_pub, default=float("nan")),
        "lag_at_pub_end": lag_at_end,
        "lag_max_all": max(probe.lags, default=float("nan")),
        "key_n": len(probe.key_ms),
        "key_noop": probe.key_noop,
        "key_p50": statistics.median(probe.key_ms) if probe.key_ms else float("nan"),
        "key_p99": pct(probe.key_ms, 99),
        "key_max": max(probe.key_ms, default=float("nan")),
        "key_to_action_p50": statistics.median(probe.key_action_ms)
        if probe.key_action_ms
        else float("nan"),
        "key_to_action_p99": pct(probe.key_action_ms, 99),
        "tick_n": len(probe.ticks_ms),
        "tick_p50": statistics.median(probe.ticks_ms) if probe.ticks_ms else 0.0,
        "tick_p99": pct(probe.ticks_ms, 99),
        "frames_per_s": probe.frames / t_all,
        "frame_p50": statistics.median(probe.frame_ms) if probe.frame_ms else 0.0,
        "long_absorbs": sorted(probe.long_absorbs, reverse=True)[:8],
        "long_absorb_n": len(probe.long_absorbs),
        "rss_max": max(probe.rss, default=0.0),
        "rss_end": probe.rss[-1] if probe.rss else 0.0,
        "tasks_in_model": len(app.model),
        "status": status_text(app),
    }


async def bench(args: argparse.Namespace, broker: str) -> list[dict[str, Any]]:
    from afirgen_tasks.factory import create_app
    from afirgen_tasks.settings import load_settings
    from tui.sources.cluster import BrokerSources

    overrides: dict[str, Any] = {}
    if args.buffer:
        overrides["console_event_buffer"] = args.buffer
    settings = load_settings(os.environ["AFIRGEN_CONFIG"], **overrides)
    celery_app = create_app(settings, main="afirgen-tui")
    sources = BrokerSources(settings, celery_app)
    if args.receiver != "default":
        from tui.sources.event_process import ProcessEventReceiver
        from tui.sources.events import EventReceiverThread
        from tui.sources.redis_events import RedisEventReceiverThread

        cls = {
            "kombu": EventReceiverThread,
            "thread": RedisEventReceiverThread,
            "process": ProcessEventReceiver,
        }[args.receiver]
        sources.events = cls(
            celery_app, settings.console_event_buffer, tally=sources.boundary.events
        )
    args.receiver_name = type(sources.events).__name__
    history = None
    if args.history:
        from tui.history.store import HistoryStore

        history = HistoryStore.from_settings(settings)  # as tui/run.py opens it
    app = make_app_class()(
        settings,
        sources,
        celery_app=celery_app,
        read_only=True,
        history=history,
        settle_heap=not args.no_settle_heap,
    )
    results = []
    rnd = random.Random(7)
    async with app.run_test(headless=True, size=(120, 40)) as pilot:
        deadline = time.monotonic() + 15
        while sources.status.state != "connected":
            if time.monotonic() > deadline:
                raise SystemExit(f"receiver did not connect: {sources.status}")
            await asyncio.sleep(0.05)
        instrument(app)
        print(
            f"console up, receiver connected; RSS {psutil.Process().memory_info().rss / 2**20:.0f} MB",
            flush=True,
        )
        watch = None
        if args.stalls:
            from bench.stalls import StallWatch

            watch = StallWatch(asyncio.get_running_loop(), threshold=args.stalls / 1000)
            watch.start()
        prof = None
        if args.profile:
            import cProfile

            prof = (
                cProfile.Profile()
            )  # the UI thread only (the event loop); the receiver thread is not traced
            prof.enable()
        for rate in args.rates:
            r = await run_phase(
                app,
                pilot,
                broker,
                rate,
                args.seconds,
                args.workers,
                not args.no_worker_buffer,
                args.settle,
                rnd,
                args.flood,
                args.publisher_nice,
            )
            results.append(r)
            print(json.dumps(r), flush=True)
        if prof is not None:
            prof.disable()
            prof.dump_stats(args.profile)
        if watch is not None:
            watch.stop()
            args.stall_report = watch.report()
        sources.stop()
        app.console_screen.history.close()
    if history is not None:
        history.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        help="broker URL of an EMPTY scratch db (default: spawn redis-server on a free port)",
    )
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[1000, 5000, 10000], help="events per second"
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="publishing time per rate")
    parser.add_argument("--workers", type=int, default=20, help="worker hostnames in the stream")
    parser.add_argument(
        "--buffer", type=int, default=0, help="console_event_buffer (default: the setting's)"
    )
    parser.add_argument(
        "--settle", type=float, default=30.0, help="max seconds to wait for the backlog"
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="cProfile the UI thread into FILE (pstats)"
    )
    parser.add_argument(
        "--no-worker-buffer", action="store_true", help="one message per worker task event"
    )
    parser.add_argument(
        "--receiver",
        choices=("default", "kombu", "thread", "process"),
        default="default",
        help="event receiver (default: what BrokerSources picks for the broker)",
    )
    parser.add_argument(
        "--flood",
        type=int,
        default=0,
        metavar="GROUP",
        help="publish with bench/flood.py, at most GROUP worker events per message (1: one each)",
    )
    parser.add_argument(
        "--history",
        action="store_true",
        help="persist the task history (SQLite in the scratch dir) as the console does",
    )
    parser.add_argument(
        "--stalls",
        type=float,
        default=0.0,
        metavar="MS",
        help="sample the UI thread while its loop is MS late (bench/stalls.py); report at the end",
    )
    parser.add_argument(
        "--publisher-nice",
        type=int,
        default=0,
        metavar="N",
        help="run the publisher under nice -n N (a fleet's publishers are not on the console's machine)",
    )
    parser.add_argument(
        "--no-settle-heap",
        action="store_true",
        help="leave the start-up heap to the garbage collector (tui/ui/heap.py), as before",
    )
    args = parser.parse_args()
    args.stall_report = ""
    cmd = "python -m bench.bench_e2e " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    tmp = Path(tempfile.mkdtemp(prefix="afirgen-e2e-"))
    redis_proc = None
    try:
        if args.url:
            broker = args.url
            import redis

            if redis.Redis.from_url(broker).dbsize():
                print(f"{broker} is not empty; use an empty scratch db", file=sys.stderr)
                return 2
        else:
            redis_proc, broker = start_redis(tmp)
        environ(broker, tmp)
        results = asyncio.run(bench(args, broker))
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
        elif args.url:
            import redis

            redis.Redis.from_url(args.url).flushdb()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n$ {cmd.strip()}")
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
        f"{args.seconds:g} s per rate, {args.workers} worker hostnames, "
        f"worker task events {'one message each' if args.no_worker_buffer or args.flood == 1 else 'batched (<= ' + str(args.flood or 24) + ')'}"
        f"{', published by bench/flood.py' if args.flood else ''}, receiver {args.receiver_name}"
    )
    head = (
        f"{'rate/s':>7} {'pub/s':>7} {'applied/s':>9} {'lag p50':>8} {'p99':>7} {'max':>7} {'dropped':>8} "
        f"{'gap':>5} {'backlog':>8} {'key p50':>8} {'p99':>7} {'tick p50':>8} {'p99':>7} {'RSS max':>8} "
        f"{'2s':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r['rate']:>7.0f} {r['pub_rate']:>7.0f} {r['applied_per_s_pub']:>9.0f} {r['lag_p50']:>7.2f}s "
            f"{r['lag_p99']:>6.2f}s {r['lag_max']:>6.2f}s {r['dropped']:>8,} {r['gap']:>5,} "
            f"{r['buffered_at_pub_end']:>8,} {r['key_p50']:>6.1f}ms {r['key_p99']:>5.1f}ms "
            f"{r['tick_p50']:>6.1f}ms {r['tick_p99']:>5.1f}ms {r['rss_max']:>6.0f}MB "
            f"{r['applied_2s_pct']:>5.1f}%"
        )
    print(
        "applied/s and lag over the publishing window; backlog = events buffered when publishing stopped; "
        "gap = published - received by the receiver thread; 2s = applied within 2 s of the end, "
        "% of published"
    )
    for r in results:
        print(
            f"  {r['rate']:.0f}/s: drained in {r['drain_s']:.1f} s (left {r['still_buffered']:,}), "
            f"{r['key_n']} key presses ({r['key_noop']} no-op; press to action p50 "
            f"{r['key_to_action_p50']:.1f} ms, p99 {r['key_to_action_p99']:.1f} ms), "
            f"{r['frames_per_s']:.0f} frames/s, "
            f"status line: {r['status']}"
        )
    if args.stall_report:
        print(args.stall_report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
