"""The ``--serve-metrics`` loop: sources in, metrics out over HTTP, until SIGTERM or SIGINT.

Threads:

* the HTTP server (prometheus_client's, daemon threads) answers scrapes from
  :class:`~tui.metrics.exporter.ClusterMetrics`;
* the event receiver the console would use (``[console] event_reader``; on Redis by
  default a reader process, :mod:`tui.sources.event_process`) captures events into its
  bounded buffer and reconnects by itself;
* an inspect thread asks the workers which queues they consume, every
  ``[console] inspect_interval`` (it may block on a dead broker; it never blocks the loop);
* this loop drains the events, polls the queue lengths every ``[console]
  queue_poll_interval`` and applies the latest inspect reply.  Only it writes the metrics'
  state.

A broker that goes away costs nothing but ``afirgen_broker_up 0`` (and one line on stderr):
the next poll tries again, and the receiver reconnects with backoff.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from typing import Any

from afirgen_tasks.settings import (
    SecretScrubber,
    SettingsError,
    load_settings,
    mask_url,
    url_secrets,
)

#: Seconds between drains of the event buffer.
TICK_S = 0.25
#: Events applied per tick at most (the rest wait in the receiver's bounded buffer).
DRAIN_BUDGET = 20_000
#: Socket timeouts of the queue poller's Redis client: a black-holed broker must not stall.
POLL_SOCKET_TIMEOUT_S = 2.0


def _say(line: str) -> None:
    print(f"afirgen-tui: {line}", file=sys.stderr, flush=True)


class _InspectThread(threading.Thread):
    """Asks the workers for stats and active queues, keeping the latest answer in :attr:`latest`."""

    def __init__(
        self,
        app: Any,
        interval: float,
        timeout: float,
        scrub: Any,
        tally: Any,
        stop: threading.Event,
    ) -> None:
        super().__init__(name="afirgen-metrics-inspect", daemon=True)
        self.app, self.interval, self.timeout = app, interval, timeout
        self.scrub, self.tally, self.stop_event = scrub, tally, stop
        self.latest: Any = None

    # ---- runs in the inspect thread -------------------------------------------------------
    def run(self) -> None:
        from tui.sources.inspection import inspect_workers

        while not self.stop_event.is_set():
            self.latest = inspect_workers(
                self.app, self.timeout, scrub=self.scrub, tally=self.tally
            )
            self.stop_event.wait(self.interval)


def run_serve_metrics(args: argparse.Namespace, listen: tuple[str, int]) -> int:
    """``afirgen-tui --serve-metrics HOST:PORT``: serve until SIGTERM/SIGINT; the exit code."""
    root = logging.getLogger()
    if not root.handlers:  # kombu's warnings would reach stderr unscrubbed (lastResort)
        root.addHandler(logging.NullHandler())
    host, port = listen
    scrub = SecretScrubber(url_secrets(args.broker) if args.broker else ())
    overrides = {"celery_broker_url": args.broker} if args.broker else {}
    try:
        settings = load_settings(args.config, **overrides)
        if getattr(args, "cluster", None) is not None:
            settings = settings.for_cluster(args.cluster)
    except SettingsError as exc:
        for line in exc.lines:
            _say(f"config error: {scrub(line)}")
        return 2
    scrub = SecretScrubber([*settings.secrets(), *scrub.secrets])

    from prometheus_client import ProcessCollector, start_http_server

    from afirgen_tasks.factory import create_app
    from tui.metrics.exporter import ClusterMetrics
    from tui.sources.events import CONNECTED
    from tui.sources.queue_lengths import QueueLengthPoller, make_queue_poller
    from tui.sources.redis_events import make_event_receiver
    from tui.sources.validate import Boundary

    app = create_app(settings, main="afirgen-metrics")
    boundary = Boundary()
    # the console's choice ([console] event_reader): on Redis, a reader process by default
    receiver = make_event_receiver(
        app, settings, settings.console_event_buffer, scrub=scrub, tally=boundary.events
    )
    metrics = ClusterMetrics(
        events_source=receiver, heartbeat_timeout=settings.console_heartbeat_timeout
    )
    ProcessCollector(registry=metrics.registry)
    shown = f"[{host}]" if ":" in host else host
    try:
        server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    except (OSError, ValueError) as exc:  # in use, not ours to bind, no such host
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        _say(f"cannot listen on {shown}:{port}: {scrub(str(reason))}")
        return 2

    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    poller = make_queue_poller(
        app,
        settings=settings,
        socket_connect_timeout=POLL_SOCKET_TIMEOUT_S,
        socket_timeout=POLL_SOCKET_TIMEOUT_S,
    )
    inspector = _InspectThread(
        app,
        settings.console_inspect_interval,
        min(settings.console_control_timeout, 2.0),
        scrub,
        boundary.inspect,
        stop,
    )
    receiver.start()
    inspector.start()
    _say(
        f"serving metrics on http://{shown}:{port}/metrics "
        f"(broker {scrub(mask_url(settings.celery_broker_url))}); SIGTERM or Ctrl-C stops"
    )
    poll_every = settings.console_queue_poll_interval
    next_poll = 0.0
    applied_inspection = None
    broker_error = ""
    try:
        while not stop.is_set():
            metrics.apply_events(receiver.drain(DRAIN_BUDGET))
            latest = inspector.latest
            if latest is not None and latest is not applied_inspection:
                metrics.apply_inspection(latest)
                applied_inspection = latest
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + poll_every
                error = ""
                try:
                    snapshot = (
                        poller.poll(tails=True)
                        if isinstance(poller, QueueLengthPoller)
                        else poller.poll()
                    )
                except Exception as exc:  # noqa: BLE001 - any broker failure: report, retry
                    snapshot = None
                    error = scrub(f"{type(exc).__name__}: {exc}")[:300]
                metrics.apply_queue_snapshot(snapshot)
                if snapshot is not None and not snapshot.available:
                    # no readable lengths on this transport: the receiver says if it is reachable
                    metrics.broker_up = receiver.status.state == CONNECTED
                else:
                    metrics.broker_up = snapshot is not None
                if error and not broker_error:
                    _say(f"broker unreachable: {error} (afirgen_broker_up 0; retrying)")
                elif broker_error and not error:
                    _say("broker reachable again (afirgen_broker_up 1)")
                broker_error = error
            stop.wait(TICK_S)
    finally:
        receiver.stop()
        server.shutdown()
        server.server_close()
        client = getattr(poller, "client", None)
        if client is not None:
            client.close()
        _say("stopped")
    return 0
