"""``afirgen-tui --check``: the headless health check.

Runs without a TTY and without Textual (imports are stdlib, afirgen_tasks, celery/kombu,
redis and ``tui.sources``; a test proves it).  Each check prints one line::

    OK    broker            redis://127.0.0.1:6379/0 answered PING in 0.3 ms

Exit codes (see ``tui.cli.EXIT_CODES``): 0 every check OK (warnings allowed unless
``--strict``), 1 a check failed (or warned, with ``--strict``), 2 could not check (bad
settings, broker unreachable, or the time budget ran out before a check could answer).

Speed: on Redis the ``celery.pidbox`` binding set names every live worker, so the check
knows how many replies to expect and stops waiting the moment all of them have answered
(``ping(limit=n)``), instead of sitting out a fixed timeout like ``celery inspect ping``.
The remote-control calls, the event listener and the result-backend probe run in parallel
threads; the whole run is bounded by ``--timeout`` (connect timeouts and reply waits are
derived from what is left of it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from afirgen_tasks.settings import (
    SecretScrubber,
    Settings,
    SettingsError,
    is_sentinel_url,
    load_settings,
    mask_url,
    url_secrets,
)

from .sources.amqp_queues import AmqpQueuePoller
from .sources.queue_lengths import (
    QueueSnapshot,
    make_queue_poller,
    pidbox_hostnames,
    transport_layout,
)
from .sources.redis_conn import is_redis_url, redis_client, sentinel_master
from .sources.validate import clean_text

OK, WARN, FAIL = "OK", "WARN", "FAIL"
#: Overall status when the check could not run (exit 2).
ERROR = "ERROR"
_RANK = {OK: 0, WARN: 1, FAIL: 2}

#: Seconds kept back from the budget for printing and teardown.
RESERVE_S = 0.15
#: With no pidbox binding on Redis no worker is expected; listen this long just in case.
NO_WORKER_GRACE_S = 0.5
#: Longest wait for workers named by pidbox bindings (a dead worker's binding lingers).
KNOWN_WORKER_WAIT_S = 1.5
#: Time kept back from a reply wait for connecting and publishing the request.
REPLY_MARGIN_S = 0.5
#: Shortest socket timeout handed to a connect, however little budget is left.
MIN_SOCKET_TIMEOUT_S = 0.05
#: A worker's silence (no ping reply, no heartbeat) means something only after waiting this
#: long: a shorter wait, cut by the budget, checked nothing (the run exits 2).
MIN_LISTEN_S = 0.5


@dataclass(slots=True)
class CheckResult:
    """One check's outcome: ``status`` is OK, WARN or FAIL; ``value``/``threshold`` are JSON-able."""

    name: str
    status: str
    detail: str
    value: Any = None
    threshold: Any = None


@dataclass(slots=True)
class CheckReport:
    """Every check's result, the overall status and the exit code."""

    checks: list[CheckResult]
    status: str
    exit_code: int
    elapsed: float
    broker: str
    timeout: float
    strict: bool = False
    #: the cluster's name (``--cluster``, ``[console] cluster_name``)
    cluster: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "elapsed": round(self.elapsed, 4),
            "broker": self.broker,
            "cluster": self.cluster,
            "timeout": self.timeout,
            "strict": self.strict,
            "checks": [asdict(c) for c in self.checks],
        }


class Budget:
    """The time left of ``--timeout`` (monotonic), minus a small reserve for output."""

    def __init__(self, total: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self._clock = clock
        self.started = clock()
        self.deadline = self.started + max(total - RESERVE_S, total * 0.5)

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self.deadline - self._clock())

    def socket_timeout(self) -> float:
        """A connect/read timeout that cannot outlive the budget."""
        return max(MIN_SOCKET_TIMEOUT_S, self.remaining())

    def elapsed(self) -> float:
        """Seconds since the check started."""
        return self._clock() - self.started


#: Removes secrets from any text before it is printed (the one scrubber, shared with the
#: console: masks every URL's password, blanks each known secret).
Scrubber = SecretScrubber


def _describe_error(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


class _Job(threading.Thread):
    """A daemon thread holding one check's result (daemon: a wedged broker call never blocks exit)."""

    def __init__(self, name: str, fn: Callable[[], Any]) -> None:
        super().__init__(name=f"afirgen-check-{name}", daemon=True)
        self._fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:  # reported as the check's detail
            self.error = exc

    def wait_until(self, end: float) -> bool:
        """Join until ``end`` (time.monotonic); True if the job finished."""
        self.join(max(0.0, end - time.monotonic()))
        return not self.is_alive()


# ---- the checks ------------------------------------------------------------------------


def _ping_broker_redis(app: Any, settings: Settings, budget: Budget) -> tuple[Any, float]:
    client = redis_client(
        settings.celery_broker_url,
        settings,
        socket_connect_timeout=budget.socket_timeout(),
        socket_timeout=budget.socket_timeout(),
    )
    started = time.perf_counter()
    client.ping()
    return client, time.perf_counter() - started


def _ping_broker_kombu(app: Any, budget: Budget) -> float:
    started = time.perf_counter()
    conn = app.connection_for_write(connect_timeout=budget.socket_timeout())
    try:
        conn.ensure_connection(max_retries=1, timeout=budget.socket_timeout())
    finally:
        conn.release()
    return time.perf_counter() - started


def _check_backend(app: Any, settings: Settings, budget: Budget) -> CheckResult:
    url = settings.celery_result_backend
    shown = mask_url(url)
    if "celery_result_backend" not in settings.model_fields_set:
        # --broker names another cluster, but the backend is still the built-in default:
        # say so, or an OK here reads as if that cluster's backend answered
        shown += " (the default: CELERY_RESULT_BACKEND / [celery] result_backend is not set)"
    scheme = url.split("://", 1)[0].lower()
    if scheme == "disabled":
        return CheckResult("backend", OK, "result backend disabled: nothing to reach")
    if scheme == "rpc":
        return CheckResult("backend", OK, "rpc:// results travel over the broker (checked above)")
    started = time.perf_counter()
    try:
        if is_redis_url(url):
            client = redis_client(
                url,
                settings,
                socket_connect_timeout=budget.socket_timeout(),
                socket_timeout=budget.socket_timeout(),
            )
            try:
                client.ping()
            finally:
                client.close()
        else:
            app.backend.get_task_meta("afirgen-check-probe")
    except Exception as exc:
        return CheckResult("backend", FAIL, f"{shown} unreachable: {_describe_error(exc)}")
    ms = (time.perf_counter() - started) * 1000
    return CheckResult("backend", OK, f"{shown} answered in {ms:.1f} ms", value=round(ms, 2))


def _workers_result(
    replies: list[dict[str, Any]] | None, minimum: int, expected: list[str] | None
) -> CheckResult:
    names = sorted(name for reply in replies or [] for name in reply)
    value = len(names)
    missing = sorted(set(expected or ()) - set(names))
    if value < minimum:
        detail = f"{value} worker(s) answered ping, {minimum} required"
        status = FAIL
    else:
        detail = f"{value} worker(s) answered ping" + (f": {', '.join(names)}" if names else "")
        status = OK
    if missing:
        detail += f"; bound but silent: {', '.join(missing)}"
        status = FAIL if status == FAIL else WARN
    return CheckResult("workers", status, detail, value=value, threshold=minimum)


def _queues_result(
    replies: dict[str, list[dict[str, Any]]] | None, configured: Sequence[str]
) -> CheckResult:
    consumers: dict[str, list[str]] = {q: [] for q in configured}
    for host, queues in (replies or {}).items():
        if not isinstance(queues, list):
            continue
        for queue in queues:
            name = queue.get("name") if isinstance(queue, dict) else None
            if name in consumers:
                consumers[name].append(host)
    unconsumed = [q for q in configured if not consumers[q]]
    value = {q: len(hosts) for q, hosts in consumers.items()}
    if unconsumed:
        return CheckResult(
            "queues",
            FAIL,
            f"no consumer on {len(unconsumed)} queue(s): {', '.join(unconsumed)}",
            value=value,
            threshold=1,
        )
    return CheckResult(
        "queues", OK, f"all {len(configured)} queues have a consumer", value=value, threshold=1
    )


def backlog_results(snapshot: QueueSnapshot, settings: Settings) -> list[CheckResult]:
    """One ``backlog[<queue>]`` result per queue: waiting messages against warn/fail thresholds."""
    results = []
    for name, queue in snapshot.queues.items():
        warn = settings.check_queue_backlog_warn.get(name, settings.check_backlog_warn)
        fail = settings.check_queue_backlog_fail.get(name, settings.check_backlog_fail)
        threshold = {"warn": warn, "fail": fail}
        if queue.waiting > fail:
            status, level = FAIL, f"over fail threshold {fail}"
        elif queue.waiting > warn:
            status, level = WARN, f"over warn threshold {warn}"
        else:
            status, level = OK, f"warn > {warn}, fail > {fail}"
        reserved = "reserved unknown" if queue.reserved is None else f"{queue.reserved} reserved"
        detail = f"{queue.waiting} waiting, {reserved} ({level})"
        if not queue.declared:
            detail = f"not declared on the broker: 0 waiting ({level})"
        results.append(
            CheckResult(
                f"backlog[{name}]", status, detail, value=queue.waiting, threshold=threshold
            )
        )
    return results


def _with_pauses(result: CheckResult, app: Any, settings: Settings) -> CheckResult:
    """A queue with no consumer because an operator paused it (its pause record is in the
    broker) is a WARN that says so, not a FAIL: the backlog checks still watch it."""
    if result.status != FAIL or not isinstance(result.value, dict):
        return result
    unconsumed = [q for q, n in result.value.items() if not n]
    try:
        from tui.sources.pause_records import PauseRecordStore

        store = PauseRecordStore.for_app(app, settings, timeout=1.0)
        records = store.read_all() if store.available else {}
    except Exception:  # the records are a courtesy here: the FAIL stands as it was
        return result
    paused = {q: records[q] for q in unconsumed if q in records}
    if not paused:
        return result
    now = time.time()
    words = ", ".join(
        f"{q} (by {rec.by or '?'}, {max(0, now - rec.paused_at) / 60:.0f} min ago)"
        for q, rec in sorted(paused.items())
    )
    rest = [q for q in unconsumed if q not in paused]
    if rest:
        detail = (
            f"no consumer on {len(rest)} queue(s): {', '.join(rest)}; paused on purpose: {words}"
        )
        return CheckResult("queues", FAIL, detail, value=result.value, threshold=result.threshold)
    return CheckResult(
        "queues",
        WARN,
        f"paused on purpose: {words}",
        value=result.value,
        threshold=result.threshold,
    )


def _broker_counts_consumers(snapshot: QueueSnapshot) -> bool:
    return bool(snapshot.queues) and all(q.consumers is not None for q in snapshot.queues.values())


def _queues_result_from_broker(snapshot: QueueSnapshot, configured: Sequence[str]) -> CheckResult:
    """Every configured queue has a consumer, as the broker counts them (AMQP)."""
    value = {
        q: (snapshot.queues[q].consumers or 0) if q in snapshot.queues else 0 for q in configured
    }
    unconsumed = [q for q in configured if not value[q]]
    if unconsumed:
        undeclared = {
            q for q in unconsumed if q in snapshot.queues and not snapshot.queues[q].declared
        }
        names = [f"{q} (not declared)" if q in undeclared else q for q in unconsumed]
        return CheckResult(
            "queues",
            FAIL,
            f"no consumer on {len(unconsumed)} queue(s): {', '.join(names)} (broker's count)",
            value=value,
            threshold=1,
        )
    return CheckResult(
        "queues",
        OK,
        f"all {len(configured)} queues have a consumer (broker's count)",
        value=value,
        threshold=1,
    )


def _reserved_source(poller: AmqpQueuePoller, snapshot: QueueSnapshot) -> CheckResult:
    """Where reserved (unacked) counts come from on RabbitMQ, or why there are none."""
    if snapshot.notice:
        return CheckResult("reserved", OK, f"not counted: {snapshot.notice}")
    if poller.management is None:
        return CheckResult("reserved", OK, "not counted: no management API configured")
    return CheckResult(
        "reserved",
        OK,
        f"{snapshot.unacked} reserved, from the RabbitMQ management API at "
        f"{poller.management.endpoint.shown}",
        value=snapshot.unacked,
    )


def busy_result(
    stats: dict[str, dict[str, Any]] | None,
    active: dict[str, list[dict[str, Any]]] | None,
    busy_seconds: float,
    now: float | None = None,
) -> CheckResult:
    """FAIL when a worker has had every pool slot busy for longer than ``busy_seconds``.

    All slots have been busy since the most recent of the active tasks started, so that
    task's ``time_start`` (epoch seconds, set by the worker) gives the duration.
    """
    now = time.time() if now is None else now
    stuck = []
    for host, tasks in (active or {}).items():
        pool = ((stats or {}).get(host) or {}).get("pool") or {}
        slots = pool.get("max-concurrency")
        if (
            not isinstance(slots, int)
            or slots <= 0
            or not isinstance(tasks, list)
            or len(tasks) < slots
        ):
            continue
        starts = [
            s
            for t in tasks
            if isinstance(t, dict) and isinstance(s := t.get("time_start"), int | float)
        ]
        if not starts or len(starts) != len(tasks):
            continue
        busy_for = now - max(starts)
        if busy_for > busy_seconds:
            stuck.append(f"{host} ({len(tasks)}/{slots} slots busy for {busy_for:.0f} s)")
    if stuck:
        return CheckResult(
            "busy", FAIL, "stuck: " + "; ".join(stuck), value=len(stuck), threshold=busy_seconds
        )
    return CheckResult(
        "busy",
        OK,
        f"no worker has had every slot busy for over {busy_seconds:g} s",
        value=0,
        threshold=busy_seconds,
    )


class _HeartbeatListener:
    """Subscribes to worker heartbeats, asks every worker for one at once, collects hostnames.

    The subscription is made (one drain) BEFORE the ``heartbeat`` broadcast, so the replies
    cannot be missed.
    """

    def __init__(
        self, app: Any, budget: Budget, ping_done: threading.Event, responders: list[str]
    ) -> None:
        self.app = app
        self.budget = budget
        self.ping_done = ping_done
        self.responders = responders  # filled by the ping job before ping_done is set
        self.heard: set[str] = set()
        self.expected: set[str] = set()
        #: the budget ended the listen before every worker was heard, too soon to judge
        self.cut_short = False

    def _on_heartbeat(self, event: dict[str, Any]) -> None:
        hostname = event.get("hostname")
        if hostname:
            self.heard.add(hostname)

    def _satisfied(self) -> bool:
        if self.ping_done.is_set():
            return set(self.responders) <= self.heard
        return bool(self.expected) and self.expected <= self.heard

    def run(self) -> set[str]:
        app = self.app
        with app.connection_for_read(connect_timeout=self.budget.socket_timeout()) as conn:
            receiver = app.events.Receiver(
                conn,
                handlers={"worker-heartbeat": self._on_heartbeat},
                routing_key="worker.heartbeat",
            )
            with receiver.consumer_context(wakeup=False) as (rconn, channel, _consumers):
                try:
                    rconn.drain_events(timeout=0.01)  # makes the subscription
                except TimeoutError:
                    pass
                app.control.broadcast("heartbeat", connection=rconn, channel=channel)
                listen_from = time.monotonic()
                while not self._satisfied():
                    left = self.budget.remaining()
                    if left <= 0:
                        self.cut_short = time.monotonic() - listen_from < MIN_LISTEN_S
                        break
                    try:
                        rconn.drain_events(timeout=min(0.2, left))
                    except TimeoutError:
                        continue
        return self.heard


def _events_result(heard: set[str] | None, responders: list[str], error: str = "") -> CheckResult:
    if error:
        return CheckResult("events", WARN, f"could not listen for events: {error}")
    heard = heard or set()
    if not responders:
        return CheckResult("events", WARN, "no worker answered ping, so no events to hear", value=0)
    silent = sorted(set(responders) - heard)
    value = len(set(responders) & heard)
    if silent:
        return CheckResult(
            "events",
            WARN,
            f"no worker-heartbeat from {', '.join(silent)} (events disabled there? "
            "start with -E / worker_send_task_events, or check the event exchange)",
            value=value,
            threshold=len(responders),
        )
    return CheckResult(
        "events",
        OK,
        f"worker-heartbeat received from all {value} worker(s)",
        value=value,
        threshold=len(responders),
    )


# ---- a quick look (the console's cluster switcher) -------------------------------------


@dataclass
class ClusterProbe:
    """What a quick look at a cluster found: is its broker reachable, how many workers
    answered a ping (None: not asked, the broker was not reached)."""

    reachable: bool
    workers: int | None
    detail: str


def probe_cluster(settings: Settings, timeout: float = 2.0) -> ClusterProbe:
    """Ping ``settings``' broker, then its workers, within ``timeout`` seconds; never raises.

    The broker and worker pings of :func:`run_check`, without the rest: the console's
    cluster switcher runs one per configured cluster in a thread worker.  The detail is
    scrubbed of every secret the settings hold.
    """
    scrub = SecretScrubber(settings.secrets())
    budget = Budget(timeout)
    try:
        app = _make_app(settings, budget)
    except Exception as exc:
        return ClusterProbe(False, None, scrub(f"no Celery app: {_describe_error(exc)}"))
    try:
        try:
            if is_redis_url(settings.celery_broker_url):
                client, latency = _ping_broker_redis(app, settings, budget)
                client.close()
            else:
                latency = _ping_broker_kombu(app, budget)
        except Exception as exc:
            return ClusterProbe(False, None, scrub(f"unreachable: {_describe_error(exc)}"))
        try:
            wait = max(0.2, budget.remaining() - REPLY_MARGIN_S)
            replies = app.control.ping(timeout=wait) or []
        except Exception as exc:
            return ClusterProbe(
                True, None, scrub(f"broker up; workers not asked: {_describe_error(exc)}")
            )
        workers = len({name for reply in replies for name in reply})
        return ClusterProbe(
            True,
            workers,
            f"up ({latency * 1000:.0f} ms), {workers} worker(s) answering",
        )
    finally:
        try:
            app.close()
        except Exception:  # a wedged connection must not turn a probe into a traceback
            pass


# ---- the run ---------------------------------------------------------------------------


@contextmanager
def _config_env(settings: Settings):
    """Point AFIRGEN_CONFIG at our config while afirgen_tasks.celery_app (which loads
    settings at import time) is imported, so --config is honoured there too."""
    saved = os.environ.get("AFIRGEN_CONFIG")
    if settings.config_path is not None:
        os.environ["AFIRGEN_CONFIG"] = str(settings.config_path)
    try:
        yield
    finally:
        if settings.config_path is not None:
            if saved is None:
                os.environ.pop("AFIRGEN_CONFIG", None)
            else:
                os.environ["AFIRGEN_CONFIG"] = saved


def _make_app(settings: Settings, budget: Budget) -> Any:
    with _config_env(settings):
        from afirgen_tasks.factory import create_app

    app = create_app(settings, main="afirgen-check")
    # Celery's conf prefers $CELERY_BROKER_URL over the configured broker_url; the read and
    # write URLs take precedence over both, so --broker really is the broker checked.
    app.conf.broker_read_url = app.conf.broker_write_url = settings.celery_broker_url
    # Connects made by kombu (control, events) must not outlive the budget either.
    options = dict(app.conf.broker_transport_options or {})
    options.setdefault("socket_connect_timeout", budget.socket_timeout())
    options["max_retries"] = 0
    app.conf.broker_transport_options = options
    app.conf.broker_connection_timeout = budget.socket_timeout()
    app.conf.broker_connection_max_retries = 0
    return app


def run_check(
    settings: Settings, *, timeout: float | None = None, strict: bool = False
) -> CheckReport:
    """Run every check against ``settings``' cluster within ``timeout`` seconds (default
    ``settings.check_timeout``) and return the report.  Never raises for broker problems."""
    total = float(timeout or settings.check_timeout)
    budget = Budget(total)
    broker = settings.broker_display
    where = settings.config_path or "defaults and environment"
    loaded = f"loaded from {where}"
    if settings.has_several_clusters:
        loaded += f", cluster {settings.cluster_name!r}"
    checks = [CheckResult("settings", OK, loaded)]

    def finish(could_not_check: bool = False) -> CheckReport:
        worst = max((_RANK[c.status] for c in checks), default=0)
        if could_not_check:
            status, code = ERROR, 2
        else:
            status = {0: OK, 1: WARN, 2: FAIL}[worst]
            code = 1 if worst == 2 or (worst == 1 and strict) else 0
        return CheckReport(
            checks, status, code, budget.elapsed(), broker, total, strict, settings.cluster_name
        )

    try:
        app = _make_app(settings, budget)
    except Exception as exc:
        checks.append(
            CheckResult("app", FAIL, f"could not build the Celery app: {_describe_error(exc)}")
        )
        return finish(could_not_check=True)

    try:
        return _run_checks(app, settings, budget, checks, finish)
    finally:
        try:
            app.close()
        except Exception:  # a wedged connection must not turn a report into a traceback
            pass


def _run_checks(
    app: Any,
    settings: Settings,
    budget: Budget,
    checks: list[CheckResult],
    finish: Callable[..., CheckReport],
) -> CheckReport:
    broker = settings.broker_display
    redis_broker = is_redis_url(settings.celery_broker_url)
    configured = [q.name for q in (app.conf.task_queues or ())]
    snapshot: QueueSnapshot | None = None
    snapshot_error = ""
    expected: list[str] | None = None

    # 1. The broker (everything else depends on it); behind Sentinel, first where it is.
    if is_sentinel_url(settings.celery_broker_url):
        try:
            host, port = sentinel_master(
                settings.celery_broker_url, settings, socket_timeout=budget.socket_timeout()
            )
        except Exception as exc:
            checks.append(CheckResult("sentinel", FAIL, f"{broker}: {_describe_error(exc)}"))
            return finish(could_not_check=True)
        # An address only (the master's password is the URL's, never shown).
        master = f"{host}:{port}"
        checks.append(
            CheckResult(
                "sentinel",
                OK,
                f"master {settings.sentinel_master_name!r} is at {master} (asked {broker})",
                value=master,
            )
        )
    try:
        if redis_broker:
            client, latency = _ping_broker_redis(app, settings, budget)
        else:
            client, latency = None, _ping_broker_kombu(app, budget)
    except Exception as exc:
        checks.append(CheckResult("broker", FAIL, f"{broker} unreachable: {_describe_error(exc)}"))
        return finish(could_not_check=True)
    ms = latency * 1000
    checks.append(
        CheckResult("broker", OK, f"{broker} answered in {ms:.1f} ms", value=round(ms, 2))
    )

    # 2. What Redis tells us directly: the live workers' mailboxes and the queue lengths.
    # (on RabbitMQ: passive declares for waiting and consumers, the management API for reserved)
    poller = make_queue_poller(
        app,
        client,
        settings=settings,
        configured_queues=configured,
        broker_url=settings.celery_broker_url,
        socket_connect_timeout=budget.socket_timeout(),
        socket_timeout=min(budget.socket_timeout(), KNOWN_WORKER_WAIT_S),
    )
    try:
        if client is not None:
            layout = transport_layout(app)
            exchange = f"{app.control.mailbox.namespace}.pidbox"
            expected = pidbox_hostnames(client, layout["sep"], layout["keyprefix"], exchange)
        snapshot = poller.poll()
    except Exception as exc:
        snapshot_error = _describe_error(exc)
    finally:
        if client is not None:
            client.close()
        if isinstance(poller, AmqpQueuePoller):
            poller.close()

    # 3. Remote control, events and the result backend, in parallel.
    if expected is None:
        reply_wait, limit = None, None  # unknown: wait out the budget
    elif expected:
        # A SIGKILLed worker leaves its pidbox binding behind for a long time: the names are
        # a hint, so a silent one costs at most KNOWN_WORKER_WAIT_S, not the whole budget.
        reply_wait, limit = KNOWN_WORKER_WAIT_S, len(expected)
    else:
        reply_wait, limit = NO_WORKER_GRACE_S, None

    #: the calls whose reply wait the budget shortened (their silence proves nothing)
    shortened: set[str] = set()

    def wait_s(call: str) -> float:
        # Celery's reply wait starts after connecting and publishing: stop it early enough
        # that the job ends before its join gives up (or the answers that came are lost).
        left = budget.remaining() - REPLY_MARGIN_S
        if reply_wait is None:
            return max(0.01, left)  # waiting out the budget is the plan here
        if left < min(reply_wait, MIN_LISTEN_S):
            shortened.add(call)
        return max(0.01, min(left, reply_wait))

    ping_done = threading.Event()
    responders: list[str] = []

    def ping() -> list[dict[str, Any]]:
        try:
            replies = app.control.ping(timeout=wait_s("ping"), limit=limit) or []
            responders.extend(name for reply in replies for name in reply)
            return replies
        finally:
            ping_done.set()

    def inspect(method: str) -> Callable[[], Any]:
        return lambda: getattr(app.control.inspect(timeout=wait_s(method), limit=limit), method)()

    listener = _HeartbeatListener(app, budget, ping_done, responders)
    listener.expected = set(expected or ())
    jobs = {
        "ping": _Job("ping", ping),
        "active_queues": _Job("active_queues", inspect("active_queues")),
        "events": _Job("events", listener.run),
        "backend": _Job("backend", lambda: _check_backend(app, settings, budget)),
    }
    busy_seconds = settings.check_busy_seconds
    if busy_seconds > 0:
        jobs["stats"] = _Job("stats", inspect("stats"))
        jobs["active"] = _Job("active", inspect("active"))
    for job in jobs.values():
        job.start()
    end = time.monotonic() + budget.remaining() + RESERVE_S / 2  # one end time for every join
    finished = {name: job.wait_until(end) for name, job in jobs.items()}

    cut: list[str] = []  # checks the budget ended before they could answer

    def outcome(name: str) -> tuple[Any, str]:
        job = jobs[name]
        if not finished[name]:
            cut.append(name)
            return None, "no answer within the time budget"
        if job.error is not None:
            return None, _describe_error(job.error)
        if name in shortened and len(job.result or ()) < (limit or 1):
            cut.append(name)  # fewer answers than expected, after a wait the budget cut
            return None, "no answer within the time budget"
        return job.result, ""

    backend, error = outcome("backend")
    checks.append(
        backend if isinstance(backend, CheckResult) else CheckResult("backend", FAIL, error)
    )

    replies, error = outcome("ping")
    if error:
        checks.append(
            CheckResult(
                "workers",
                FAIL,
                f"ping failed: {error}",
                value=0,
                threshold=settings.check_min_workers,
            )
        )
    else:
        checks.append(_workers_result(replies, settings.check_min_workers, expected))

    queues, error = outcome("active_queues")
    if snapshot is not None and snapshot.available and _broker_counts_consumers(snapshot):
        # the broker's own count (AMQP): a consumer that is not a Celery worker counts too
        checks.append(_with_pauses(_queues_result_from_broker(snapshot, configured), app, settings))
    elif error:
        checks.append(CheckResult("queues", FAIL, f"inspect active_queues failed: {error}"))
    else:
        checks.append(_with_pauses(_queues_result(queues, configured), app, settings))

    if snapshot is not None and snapshot.available:
        checks.extend(backlog_results(snapshot, settings))
        if isinstance(poller, AmqpQueuePoller):
            checks.append(_reserved_source(poller, snapshot))
    elif snapshot is not None:
        checks.append(CheckResult("backlog", OK, f"not checked: {snapshot.error}"))
    else:
        checks.append(
            CheckResult("backlog", FAIL, f"could not read queue lengths: {snapshot_error}")
        )

    if busy_seconds > 0:
        stats, error1 = outcome("stats")
        active, error2 = outcome("active")
        if error1 or error2:
            checks.append(
                CheckResult("busy", WARN, f"inspect stats/active failed: {error1 or error2}")
            )
        else:
            checks.append(busy_result(stats, active, busy_seconds))
    else:
        checks.append(CheckResult("busy", OK, "not checked (check_busy_seconds = 0)"))

    events_error = jobs["events"].error if finished["events"] else None
    if not finished["events"] or listener.cut_short:
        cut.append("events")
        checks.append(
            CheckResult("events", FAIL, "no worker-heartbeat heard within the time budget")
        )
    else:
        checks.append(
            _events_result(
                listener.heard,
                list(responders),
                _describe_error(events_error) if events_error else "",
            )
        )
    if cut:
        # an unanswered check proves nothing either way: the run could not check (exit 2),
        # it must not pass (nor call the cluster unhealthy) on a budget too short to ask
        for check in checks:
            if check.status == FAIL and "time budget" in check.detail:
                check.detail = (
                    f"not checked: --timeout {budget.total:g} s ran out first ({check.detail})"
                )
        return finish(could_not_check=True)
    return finish()


# ---- the command line ------------------------------------------------------------------


def format_line(result: CheckResult) -> str:
    """``OK    broker            detail``: status, name, detail on one line.

    The detail carries hostnames and queue names from worker replies (untrusted): control
    characters are shown as visible symbols, never written to the terminal as escapes.
    """
    detail = clean_text(" ".join(result.detail.split()))
    return f"{result.status:<5} {result.name:<18} {detail}"


def _settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "broker", None):
        overrides["celery_broker_url"] = args.broker
    settings = load_settings(getattr(args, "config", None), **overrides)
    if (cluster := getattr(args, "cluster", None)) is not None:
        settings = settings.for_cluster(cluster)
    return settings


def _quiet_logging() -> None:
    # Without handlers Python prints WARNINGs of kombu/celery to stderr (lastResort);
    # the check reports problems itself, scrubbed.
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())


def run_check_cli(args: argparse.Namespace) -> int:
    """``afirgen-tui --check``: print the report (lines or ``--json``), return the exit code."""
    _quiet_logging()
    as_json = bool(getattr(args, "json", False))
    strict = bool(getattr(args, "strict", False))
    scrub = Scrubber()
    if getattr(args, "broker", None):
        scrub = Scrubber(url_secrets(args.broker))
    try:
        settings = _settings_from_args(args)
    except SettingsError as exc:
        lines = [scrub(line) for line in exc.lines]
        for line in lines:
            print(f"afirgen-tui: config error: {line}", file=sys.stderr)
        if as_json:
            failed = {
                "status": ERROR,
                "exit_code": 2,
                "elapsed": 0.0,
                "broker": scrub(mask_url(getattr(args, "broker", "") or "")),
                "timeout": getattr(args, "timeout", None),
                "strict": strict,
                "checks": [asdict(CheckResult("settings", FAIL, "; ".join(lines)))],
            }
            print(json.dumps(failed, indent=2))
        return 2
    scrub = Scrubber([*settings.secrets(), *scrub.secrets])
    report = run_check(settings, timeout=getattr(args, "timeout", None), strict=strict)
    for check in report.checks:
        check.detail = scrub(check.detail)
    report.broker = scrub(report.broker)
    if as_json:
        print(scrub(json.dumps(report.to_dict(), indent=2, default=str)))
    else:
        for check in report.checks:
            print(scrub(format_line(check)))
        verdict = {0: "healthy", 1: "unhealthy", 2: "could not check"}[report.exit_code]
        if settings.has_several_clusters:
            verdict = f"cluster {report.cluster}: {verdict}"
        print(
            f"{report.status:<5} {'overall':<18} {verdict} in {report.elapsed:.2f} s (exit {report.exit_code})"
        )
    sys.stdout.flush()
    return report.exit_code
