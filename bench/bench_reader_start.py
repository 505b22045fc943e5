"""How long the event reader process takes to start: from ``start()`` to subscribed, and to
the first event received (issue 17).

    python -m bench.bench_reader_start --rounds 8

Against the bench's own ``redis-server``, with ``bench/flood.py`` publishing 200 events/s
throughout, each round starts and stops, back to back:

* ``popen``: :class:`tui.sources.event_process.ProcessEventReceiver` as the console runs
  it (a fresh interpreter, ``python -m tui.sources.event_process``);
* ``forkserver``: the same child code forked by multiprocessing's forkserver with the
  reader's modules preloaded -- the alternative measured and not chosen (the module
  docstring of tui/sources/event_process.py says why).  Its first start includes
  starting the server.

Run by hand, never in CI; the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tui.sources import event_process  # noqa: E402
from tui.sources.event_process import ProcessEventReceiver  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PATTERN = "/0.celeryev/*"


class _FirstConfig:
    """The child's pipe, with the config's parent pid made the forkserver's (the child's
    parent is the server there, not the bench)."""

    def __init__(self, conn: Any):
        self.conn = conn
        self.first = True

    def recv(self) -> Any:
        if self.first:
            self.first = False
            config = self.conn.recv()
            config["parent"] = os.getppid()
            return config
        return self.conn.recv()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def _forkserver_child(conn: Any) -> None:
    try:
        event_process.serve(_FirstConfig(conn))  # type: ignore[arg-type]
    finally:
        os._exit(0)


class _Forked:
    """What ProcessEventReceiver uses of a Popen, over a multiprocessing Process."""

    def __init__(self, process: Any):
        self.process, self.pid = process, process.pid

    def poll(self) -> int | None:
        return self.process.exitcode  # type: ignore[no-any-return]

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired("forkserver child", timeout or 0)
        return self.process.exitcode  # type: ignore[no-any-return]

    def kill(self) -> None:
        self.process.kill()


class ForkserverReceiver(ProcessEventReceiver):
    def _start_process(self) -> Any:
        ctx = multiprocessing.get_context("forkserver")
        # the reader's modules, redis-py with them (imported lazily by the product)
        ctx.set_forkserver_preload(["tui.sources.event_process", "tui.sources.redis_conn"])
        ours, theirs = ctx.Pipe()
        process = ctx.Process(target=_forkserver_child, args=(theirs,), daemon=True)
        process.start()
        theirs.close()
        self._process, self._conn = _Forked(process), ours  # type: ignore[assignment]
        self.starts += 1
        ours.send(
            {
                "parent": os.getpid(),
                "url": self.url,
                "options": self.options,
                "pattern": self.pattern,
                "batch_s": self.batch_s,
            }
        )
        return ours


def one(cls: type[ProcessEventReceiver], url: str) -> tuple[float, float]:
    """Seconds from start() to subscribed, and to the first event received."""
    receiver = cls(None, 100_000, url=url, pattern=PATTERN)
    started = time.perf_counter()
    receiver.start()
    connected = first = float("nan")
    try:
        while time.perf_counter() - started < 30:
            now = time.perf_counter() - started
            if connected != connected and receiver.status.state == "connected":
                connected = now
            if first != first and receiver.received:
                first = now
            if connected == connected and first == first:
                break
            time.sleep(0.002)
    finally:
        receiver.stop()
    return connected, first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument(
        "--hogs", type=int, default=0, help="busy-loop processes running meanwhile (load)"
    )
    args = parser.parse_args()
    from bench.redis_spawn import start_redis

    server, url = start_redis(Path(tempfile.mkdtemp(prefix="bench-reader-start-")))
    publisher = subprocess.Popen(
        [sys.executable, "-m", "bench.flood", "--url", url, "--rate", "200"]
        + ["--seconds", "3600", "--workers", "1"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kinds: dict[str, type[ProcessEventReceiver]] = {
        "popen": ProcessEventReceiver,
        "forkserver": ForkserverReceiver,
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in kinds}
    load0 = os.getloadavg()[0]
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
    try:
        time.sleep(1.0)
        for _ in range(args.rounds):
            for name, cls in kinds.items():
                results[name].append(one(cls, url))
    finally:
        for process in (*hogs, publisher):
            process.kill()
            process.wait()
        server.kill()
    print(f"$ python -m bench.bench_reader_start {' '.join(sys.argv[1:])}")
    print(
        f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}, {args.rounds} rounds"
        f"{f', {args.hogs} busy-loop processes' if args.hogs else ''}"
    )
    print(
        f"{'start':>10} {'first: subscribed':>18} {'event':>7}   later: subscribed p50 max   event p50"
    )
    for name, rows in results.items():
        sub = [r[0] * 1000 for r in rows]
        ev = [r[1] * 1000 for r in rows]
        print(
            f"{name:>10} {sub[0]:>15.0f} ms {ev[0]:>4.0f} ms   "
            f"{statistics.median(sub[1:]):>13.0f} ms {max(sub[1:]):>4.0f} ms "
            f"{statistics.median(ev[1:]):>7.0f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
