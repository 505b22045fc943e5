"""The app factory: :func:`create_app` builds a configured Celery app from explicit settings.

Importing this module has no side effects.  ``afirgen_tasks.celery_app`` is the ``celery -A``
target that builds the workers' app from the environment when Celery asks for it.

``celery -A afirgen_tasks.celery_app worker -l info`` consumes all five queues;
``-Q email -c 4`` or ``--autoscale=8,2`` work as usual.  :func:`create_app` builds an
app from explicit settings (tests, the console, the demo sandbox).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task, signals
from celery.app.amqp import AMQP
from kombu import Exchange, Queue
from redis.backoff import NoBackoff
from redis.retry import Retry

from .priority import (
    AMQP_MAX_PRIORITY,
    DEFAULT_PRIORITY,
    PRIORITY_HEADER,
    REDIS_PRIORITY_STEPS,
    is_redis_transport,
    to_wire,
    validate_priority,
)
from .redis_transport import keep_transport_failover
from .routing import QUEUES, celery_task_routes
from .settings import Settings, is_sentinel_url

log = logging.getLogger(__name__)

#: Header of a job the console re-sent (a retry): the id of the task it retries.  The
#: ``task-sent`` event carries it as ``retry_of``, so every console sees the link.
RETRY_OF_HEADER = "afirgen_retry_of"

#: Separator between a queue's name and its priority step in Redis keys (``email:7``).
REDIS_PRIORITY_SEP = ":"

TASK_MODULES = (
    "afirgen_tasks.email",
    "afirgen_tasks.reports",
    "afirgen_tasks.analytics",
    "afirgen_tasks.cleanup",
)


class PriorityAMQP(AMQP):
    """Maps the operator priority (1-10, higher = urgent) to the transport's wire priority.

    Every publish path (``delay``, ``apply_async``, ``send_task``, retries, canvas) ends in
    ``send_task_message``; wrapping it is the one place the mapping cannot be bypassed.
    The operator value also travels in a header (retries reuse it instead of the wire value)
    and in the ``task-sent`` event (the console shows it), as does the id of the task a
    console retry re-sends (:data:`RETRY_OF_HEADER`).
    """

    def _create_task_sender(self):
        send = super()._create_task_sender()
        broker_url = self.app.conf.broker_url or ""

        def send_task_message(producer, name, message, **kwargs):
            headers, _properties, _body, sent_event = message
            raw = kwargs.get("priority")
            if raw is None:
                raw = headers.get(PRIORITY_HEADER)
            priority = DEFAULT_PRIORITY if raw is None else validate_priority(raw)
            headers[PRIORITY_HEADER] = priority
            kwargs["priority"] = to_wire(priority, broker_url)
            if sent_event is not None:
                sent_event["priority"] = priority
                # send_task(headers=...) reaches here unmerged (Celery merges them below)
                retry_of = (kwargs.get("headers") or {}).get(RETRY_OF_HEADER)
                if retry_of is not None:
                    sent_event["retry_of"] = retry_of
            return send(producer, name, message, **kwargs)

        return send_task_message


class AFIRGenTask(Task):
    """Base class of every AFIRGen task: retries keep the operator's priority, not the wire one."""

    def signature_from_request(
        self, request=None, args=None, kwargs=None, queue=None, **extra_options
    ):
        sig = super().signature_from_request(request, args, kwargs, queue, **extra_options)
        request = self.request if request is None else request
        operator = getattr(request, PRIORITY_HEADER, None)
        if operator is None:
            operator = (getattr(request, "headers", None) or {}).get(PRIORITY_HEADER)
        if operator is not None:
            sig.options["priority"] = operator
        else:
            sig.options.pop("priority", None)
        return sig


def make_queues(broker_url: str) -> tuple[Queue, ...]:
    """The five queues, each on its own direct exchange, with priorities enabled."""
    args = {} if is_redis_transport(broker_url) else {"x-max-priority": AMQP_MAX_PRIORITY}
    return tuple(
        Queue(name, Exchange(name, type="direct"), routing_key=name, queue_arguments=dict(args))
        for name in QUEUES
    )


def tls_options(settings: Settings) -> dict[str, Any] | None:
    """``broker_use_ssl`` / ``redis_backend_use_ssl`` from the [tls] settings, or None when none is set."""
    if not (settings.tls_ca_certs or settings.tls_certfile or settings.tls_keyfile):
        return None
    return settings.ssl_options()


REDIS_TRANSPORT = "afirgen_tasks.redis_transport:Transport"
#: The same behind Redis Sentinel (``sentinel://`` URLs).
REDIS_SENTINEL_TRANSPORT = "afirgen_tasks.redis_transport:SentinelTransport"


def atomic_fetch_transport(broker_url: str) -> str | None:
    """The transport with the atomic fetch for ``broker_url``, or None (kombu's own transport)."""
    scheme = broker_url.split("://", 1)[0].lower()
    if scheme in {"redis", "rediss"}:
        return REDIS_TRANSPORT
    if scheme == "sentinel":
        return REDIS_SENTINEL_TRANSPORT
    return None


def uses_atomic_fetch(broker_url: str) -> bool:
    """True when workers on ``broker_url`` fetch atomically (plain Redis, TLS and Sentinel)."""
    return atomic_fetch_transport(broker_url) is not None


def sentinel_options(settings: Settings) -> dict[str, Any]:
    """``master_name`` and ``sentinel_kwargs`` (timeouts, password, no retries) for kombu and
    Celery's Sentinel backend."""
    options = settings.sentinel_transport_options()
    # redis-py retries a refused connect 3 times with a 1-10 s backoff.  The sentinels are
    # asked again on every new connection (a worker opens several), so one dead sentinel
    # first in the list cost each of them ~7 s and workers were not ready after 6 s: ask
    # the next sentinel at once instead.
    options["sentinel_kwargs"]["retry"] = Retry(NoBackoff(), 0)
    return options


def restore_sweep_interval(visibility_timeout: int) -> int:
    """Seconds between sweeps for unacknowledged jobs of dead workers: a quarter of the timeout, 1-10 s."""
    return max(1, min(10, visibility_timeout // 4))


def sweep_lock_expiry(visibility_timeout: int) -> int:
    """Seconds before a dead sweeper's ``unacked_mutex`` frees itself: two sweep intervals, at least 5."""
    return max(5, 2 * restore_sweep_interval(visibility_timeout))


def celery_config(settings: Settings) -> dict[str, Any]:
    """Every Celery setting AFIRGen uses, derived from ``settings``."""
    broker = settings.celery_broker_url
    transport_options: dict[str, Any] = {
        "visibility_timeout": settings.celery_visibility_timeout,
        # Publisher side: retry a lost broker 10 times before the caller sees the error.
        "max_retries": settings.celery_broker_connection_max_retries,
        "interval_start": 0,
        "interval_step": 0.5,
        "interval_max": 5,
    }
    if is_redis_transport(broker):
        transport_options.update(
            priority_steps=REDIS_PRIORITY_STEPS,
            sep=REDIS_PRIORITY_SEP,
            queue_order_strategy="priority",
            # A killed worker's jobs wait in the ``unacked`` hash until a live worker's sweep
            # finds them past the visibility timeout.  kombu's defaults (a sweep every 10 s
            # that scans Redis only every 10th time) brought them back up to ~100 s late: 97 s
            # with an 8 s timeout in tests/integration/test_worker_faults.py.  Tick every second
            # and scan every restore_sweep_interval() ticks; counting the ticks costs nothing,
            # a scan is one small ZRANGE.  (Synchronous consumers tick on each idle poll.)
            unacked_restore_interval=1,
            unacked_restore_throttle=restore_sweep_interval(settings.celery_visibility_timeout),
            # The sweep holds a lock (``unacked_mutex``) that a SIGKILLed sweeper never
            # releases; kombu's 300 s expiry then stops every worker's sweep for 5 minutes.
            # A sweep takes milliseconds, and restoring is a WATCH transaction per job, so
            # two overlapping sweeps cannot restore a job twice: a short expiry is safe.
            unacked_mutex_expire=sweep_lock_expiry(settings.celery_visibility_timeout),
        )
    if is_sentinel_url(broker):
        transport_options.update(sentinel_options(settings))
    backend_options: dict[str, Any] = {"visibility_timeout": settings.celery_visibility_timeout}
    if is_sentinel_url(settings.celery_result_backend):
        backend_options.update(sentinel_options(settings))
    conf: dict[str, Any] = {
        "broker_url": broker,
        # Redis: kombu's transport with an atomic fetch (afirgen_tasks/redis_transport.py).
        "broker_transport": atomic_fetch_transport(broker),
        # Celery lets $CELERY_BROKER_URL beat broker_url; explicit read/write URLs make
        # create_app(settings) use the settings' broker even when the environment differs.
        "broker_read_url": broker,
        "broker_write_url": broker,
        "result_backend": settings.celery_result_backend,
        "broker_transport_options": transport_options,
        "result_backend_transport_options": backend_options,
        "broker_connection_retry": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": settings.celery_broker_connection_max_retries,
        "broker_channel_error_retry": True,
        "task_queues": make_queues(broker),
        "task_default_queue": "default",
        "task_default_exchange": "default",
        "task_default_routing_key": "default",
        "task_default_priority": DEFAULT_PRIORITY,
        "task_create_missing_queues": False,
        "task_routes": celery_task_routes(),
        "task_queue_max_priority": None if is_redis_transport(broker) else AMQP_MAX_PRIORITY,
        # Reliability: ack after the task ran, requeue when the pool process dies.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": settings.celery_broker_connection_max_retries,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 5,
        },
        "task_time_limit": settings.celery_task_time_limit,
        "task_soft_time_limit": settings.celery_task_soft_time_limit,
        "result_expires": settings.celery_result_expires,
        "result_extended": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        # Events on by default so the console sees each job from the moment it is queued.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        "worker_pool": settings.celery_worker_pool,
        "worker_concurrency": settings.celery_worker_concurrency,
        "worker_prefetch_multiplier": settings.celery_worker_prefetch_multiplier,
        "worker_max_tasks_per_child": settings.celery_worker_max_tasks_per_child or None,
        "worker_autoscaler": "celery.worker.autoscale:Autoscaler",
        "worker_consumer": "afirgen_tasks.reliability:BackoffConsumer",
        # Revoked ids survive restarts: %n is the node name (one file per worker).
        "worker_state_db": str(settings.paths_data_dir / "worker-%n.state"),
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # pool_restart remote control (the console's worker detail, P); read by the worker at
        # start, and reported by inspect().conf() so the console can say when it is off
        "worker_pool_restarts": settings.celery_worker_pool_restarts,
        "worker_hijack_root_logger": True,
    }
    if is_sentinel_url(broker):
        # kombu would take the transport from the next URL's scheme after a connection error
        # (its stock Sentinel transport, without the atomic fetch): stay on ours.
        conf["broker_failover_strategy"] = keep_transport_failover
    tls = tls_options(settings)
    if tls and broker.startswith(("rediss", "amqps")):
        conf["broker_use_ssl"] = tls
    elif broker.startswith("rediss") and conf["broker_transport"]:
        # kombu picks TLS from the rediss scheme only when it also picks the transport from
        # it (and then skips certificate checks); with ours named, TLS is asked for here,
        # verified against the system CAs unless [tls] cert_reqs says otherwise.
        conf["broker_use_ssl"] = settings.ssl_options()
    if tls and settings.celery_result_backend.startswith("rediss"):
        conf["redis_backend_use_ssl"] = tls
    return conf


def create_app(settings: Settings, main: str = "afirgen") -> Celery:
    """A Celery app configured from ``settings`` with every AFIRGen task registered."""
    app = Celery(main, amqp=PriorityAMQP, task_cls=AFIRGenTask)
    app.conf.update(celery_config(settings))
    app.afirgen_settings = settings
    app.conf.afirgen_worker_autoscale = settings.celery_worker_autoscale
    app.conf.afirgen_worker_gossip = settings.celery_worker_gossip
    for module in TASK_MODULES:
        __import__(module)
    app.set_current()
    return app


@signals.celeryd_init.connect
def _prepare_worker(sender=None, instance=None, conf=None, options=None, **_: Any) -> None:
    """Create the data directories, apply CELERY_WORKER_AUTOSCALE to workers started without
    ``--autoscale``, and start workers ``--without-gossip`` unless CELERY_WORKER_GOSSIP is true.

    Celery has no config key for autoscale or gossip (only the CLI flags); the worker passes
    its options through ``prepare_args`` right after this signal, so we add ours there.
    """
    settings = getattr(getattr(instance, "app", None), "afirgen_settings", None)
    if settings is not None:
        # The worker state db (revoked ids) and the task outputs live in these directories.
        settings.ensure_dirs()
    default = getattr(conf, "afirgen_worker_autoscale", "") if conf is not None else ""
    autoscale = bool(default) and not (options or {}).get("autoscale")
    # Gossip parses every other worker's heartbeat, and Celery's State raises on a forged
    # one (timestamp "x"): the error escapes the consumer and kills the worker.  Nothing in
    # AFIRGen uses gossip (elections, node join/leave callbacks), so it is off unless asked.
    without_gossip = conf is not None and not getattr(conf, "afirgen_worker_gossip", True)
    if instance is None or not (autoscale or without_gossip):
        return
    original = instance.prepare_args

    def prepare_args(**kwargs: Any) -> dict[str, Any]:
        kwargs = original(**kwargs)
        if autoscale and not kwargs.get("autoscale"):
            kwargs["autoscale"] = default
        if without_gossip:
            kwargs["without_gossip"] = True
        return kwargs

    instance.prepare_args = prepare_args


@signals.worker_ready.connect
def _report_fetch(sender: Any = None, **_: Any) -> None:
    """Say in the worker's log whether its fetch is atomic (a SIGKILL cannot lose a job) or
    kombu's own BRPOP (it can: docs/reliability.md), from the channel it really consumes on."""
    channel = getattr(getattr(sender, "task_consumer", None), "channel", None)
    if channel is None:
        return
    transport = type(channel.connection).__module__ + ":" + type(channel.connection).__name__
    if getattr(channel, "atomic_fetch", False):
        log.info(
            "afirgen: atomic fetch on (%s): a worker killed while fetching cannot lose the job",
            transport,
        )
    else:
        log.warning(
            "afirgen: atomic fetch OFF (%s fetches with BRPOP): a worker killed while fetching can "
            "lose that job; see docs/reliability.md",
            transport,
        )


def task_names(app: Celery) -> list[str]:
    """The AFIRGen task names registered on ``app`` (no Celery built-ins)."""
    return sorted(n for n in app.tasks if n.startswith("afirgen_tasks."))
