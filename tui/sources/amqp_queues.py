"""Queue lengths on a RabbitMQ broker: AMQP passive declares, plus the management HTTP API.

AMQP itself tells, for each queue, how many messages are ready (waiting) and how many
consumers it has: ``queue_declare(passive=True)`` answers ``(name, message_count,
consumer_count)`` without creating anything.  A queue nobody declared yet answers 404, which
closes the channel: the poller opens another and shows the queue "not declared" (not an
error).  One connection, one channel, every queue; each answer is bounded by the socket's
read timeout.

What AMQP does not tell:

* the messages workers have taken and not acknowledged (reserved): only the management API
  has them (``GET /api/queues/<vhost>`` -> ``messages_unacknowledged``).  When it cannot be
  reached the reserved column is unknown (``-``) and :attr:`QueueSnapshot.notice` says why,
  once; it is asked again every :data:`MANAGEMENT_RETRY_S` seconds;
* how many messages wait at each priority: RabbitMQ keeps a priority queue's messages in
  per-priority sub-queues but exposes only their sum, so the bands are unknown
  (:attr:`QueueLength.bands_known` False, ``by_priority`` empty), never zeros;
* which queues exist: the configured ones are always polled; the management API, when it
  answers, names the others of the vhost.

Blocking network I/O: call from a thread worker.  Never imports Textual.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from tui.sources.queue_lengths import QueueLength, QueueSnapshot
from tui.sources.validate import Tally, is_key

#: Schemes kombu opens with py-amqp.
AMQP_SCHEMES: tuple[str, ...] = ("amqp", "amqps", "pyamqp")
#: The management plugin's default ports (plain, TLS).
MANAGEMENT_PORT, MANAGEMENT_TLS_PORT = 15672, 15671
#: Seconds before an unreachable management API is asked again (a blackholed host costs a
#: timeout per ask; refused connections cost nothing, but the answer rarely changes).
MANAGEMENT_RETRY_S = 30.0
#: Queues whose names start so are plumbing (pause records, Celery's event and reply queues).
PAUSE_RECORD_PREFIX = "afirgen.paused."
#: Largest count accepted from the management API (a JSON number may be anything).
MAX_COUNT = 2**53
#: Bytes of a management API answer read at most (one vhost's queue list).
MAX_BODY_BYTES = 32 * 1024 * 1024


def is_amqp_url(url: str | None) -> bool:
    """True when ``url`` (or its first ``;``-joined URL) is an AMQP broker URL."""
    return (url or "").split(";", 1)[0].split("://", 1)[0].strip().lower() in AMQP_SCHEMES


def is_internal_queue(name: str) -> bool:
    """Celery's plumbing and ours: event queues, pidbox mailboxes and replies, pause records."""
    return (
        name.startswith(("celeryev.", PAUSE_RECORD_PREFIX))
        or name.endswith(".pidbox")
        or ".reply.celery.pidbox" in name
        or name.startswith("amq.")
    )


# ---- the management API --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManagementEndpoint:
    """Where the management API of the broker's vhost is, and who asks it."""

    #: ``http://host:15672`` (no credentials, no trailing slash; may carry a path prefix)
    base: str
    user: str
    password: str = field(repr=False)
    vhost: str

    @property
    def shown(self) -> str:
        """The base URL, safe to show (it never holds the credentials)."""
        return self.base

    def queues_url(self) -> str:
        """``/api/queues/<vhost>`` with only the columns the console reads."""
        columns = "name,messages_ready,messages_unacknowledged,consumers"
        return f"{self.base}/api/queues/{quote(self.vhost, safe='')}?columns={columns}"


def management_endpoint(broker_url: str, override: str = "") -> ManagementEndpoint:
    """The management API for ``broker_url``: ``override`` (``[rabbitmq] management_url``)
    when set, else the broker's host on 15672 (``https`` on 15671 for ``amqps``).  The user
    and password are the override's when it has them, else the broker's (guest/guest when
    the URL names none, as kombu does); the vhost is always the broker's."""
    from kombu.utils.url import parse_url

    first = broker_url.split(";", 1)[0].strip()
    parts = parse_url(first)
    user = parts.get("userid") or "guest"
    password = parts.get("password") or ("guest" if user == "guest" else "")
    vhost = parts.get("virtual_host") or "/"
    override = override.strip()
    if override:
        split = urlsplit(override)
        host = split.hostname or "127.0.0.1"
        netloc = f"[{host}]" if ":" in host else host
        if split.port:
            netloc += f":{split.port}"
        base = f"{split.scheme.lower()}://{netloc}{split.path.rstrip('/')}"
        if split.username is not None:
            user, password = unquote(split.username), unquote(split.password or "")
        return ManagementEndpoint(base, user, password, vhost)
    scheme = first.split("://", 1)[0].lower()
    host = parts.get("hostname") or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"  # as kombu's py-amqp transport does
    netloc = f"[{host}]" if ":" in host else host
    if scheme == "amqps":
        return ManagementEndpoint(f"https://{netloc}:{MANAGEMENT_TLS_PORT}", user, password, vhost)
    return ManagementEndpoint(f"http://{netloc}:{MANAGEMENT_PORT}", user, password, vhost)


@dataclass(frozen=True, slots=True)
class ManagedQueue:
    """One queue as the management API lists it (its counts lag AMQP's by a few seconds)."""

    name: str
    ready: int | None
    unacked: int | None
    consumers: int | None


def _count(value: Any) -> int | None:
    if value.__class__ is int and 0 <= value <= MAX_COUNT:
        return int(value)
    return None


def parse_management_queues(payload: Any, tally: Tally | None = None) -> dict[str, ManagedQueue]:
    """The queues in a ``GET /api/queues/<vhost>`` answer, cleaned at the trust boundary.

    A queue name is untrusted (anyone who may declare queues names them): a bad name skips
    the entry; a count that is not a sane non-negative integer is unknown (None), never 0.
    """
    tally = tally if tally is not None else Tally()
    out: dict[str, ManagedQueue] = {}
    if not isinstance(payload, list):
        tally.skip("management API: queue list is not a list")
        return out
    for item in payload:
        name = item.get("name") if isinstance(item, dict) else None
        if not is_key(name):
            tally.skip("management API: queue without a valid name")
            continue
        assert isinstance(item, dict)
        counts = [_count(item.get(k)) for k in ("messages_ready", "messages_unacknowledged")]
        consumers = _count(item.get("consumers"))
        if None in counts and any(k in item for k in ("messages_ready", "messages_unacknowledged")):
            tally.clean("management API: bad count dropped")
        out[name] = ManagedQueue(name, counts[0], counts[1], consumers)
    return out


class ManagementUnreachable(Exception):
    """The management API did not answer usefully; the message says why (no credentials)."""


class ManagementClient:
    """Reads one vhost's queue list from the management HTTP API, bounded by ``timeout``."""

    def __init__(
        self,
        endpoint: ManagementEndpoint,
        timeout: float = 2.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.ssl_context = ssl_context

    def queues(self, tally: Tally | None = None) -> dict[str, ManagedQueue]:
        """Every queue of the vhost; raises :class:`ManagementUnreachable` saying why not."""
        ep = self.endpoint
        request = urllib.request.Request(ep.queues_url(), headers={"Accept": "application/json"})
        token = base64.b64encode(f"{ep.user}:{ep.password}".encode()).decode("ascii")
        # unredirected: a redirect never carries the credentials to another host
        request.add_unredirected_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout, context=self.ssl_context
            ) as answer:
                body = answer.read(MAX_BODY_BYTES + 1)
        except urllib.error.HTTPError as exc:
            why = {401: "401: the user or password is refused", 404: "404: no such vhost"}
            raise ManagementUnreachable(why.get(exc.code, f"HTTP {exc.code}")) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ManagementUnreachable(str(reason) or type(exc).__name__) from None
        if len(body) > MAX_BODY_BYTES:
            raise ManagementUnreachable("answer too large")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            raise ManagementUnreachable("answer is not JSON") from None
        return parse_management_queues(payload, tally)


def management_client(settings: Any, timeout: float) -> ManagementClient:
    """The management client for ``settings`` (broker URL, override, TLS files)."""
    endpoint = management_endpoint(
        settings.celery_broker_url, getattr(settings, "rabbitmq_management_url", "") or ""
    )
    context = None
    if endpoint.base.startswith("https://"):
        context = ssl.create_default_context(cafile=settings.tls_ca_certs or None)
        if settings.tls_certfile:
            context.load_cert_chain(settings.tls_certfile, settings.tls_keyfile or None)
        if settings.tls_cert_reqs == "none":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    return ManagementClient(endpoint, timeout, context)


def unreachable_notice(endpoint: ManagementEndpoint, why: str) -> str:
    """The one line said when reserved counts cannot be read."""
    return (
        "reserved counts need the RabbitMQ management API "
        f"(not reachable at {endpoint.shown}: {why})"
    )


# ---- AMQP -----------------------------------------------------------------------------


def amqp_connection(app: Any, timeout: float) -> Any:
    """A kombu connection to ``app``'s broker whose every read and write is bounded."""
    # heartbeat 0: nobody drives heartbeats on this connection between uses, and a broker
    # that expected them would close it while the console sits idle
    return app.connection_for_write(
        connect_timeout=timeout,
        heartbeat=0,
        transport_options={"read_timeout": timeout, "write_timeout": timeout},
    )


class PassiveDeclarer:
    """Passive declares on one channel of one connection, reopened after a 404 or a drop.

    Not thread-safe: one per thread (or behind the caller's lock).
    """

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._conn: Any = None
        self._channel: Any = None
        #: AMQP methods sent (each passive declare counts once)
        self.commands = 0

    def channel(self) -> Any:
        """The open channel (connecting first when needed)."""
        if self._conn is None:
            conn = self._connect()
            conn.ensure_connection(max_retries=1)
            self._conn = conn
        if self._channel is None or not getattr(self._channel, "is_open", True):
            self._channel = self._conn.channel()
        return self._channel

    def declare(self, name: str) -> tuple[int, int] | None:
        """``(ready, consumers)`` of ``name``, or None when the broker has no such queue.

        Connection errors propagate (the connection is dropped, the next call reconnects).
        """
        from amqp.exceptions import NotFound

        ok = self.run(lambda channel: channel.queue_declare(queue=name, passive=True), NotFound)
        if ok is None:
            return None
        return int(ok.message_count), int(ok.consumer_count)

    def run(self, call: Callable[[Any], Any], absent: type[Exception] | None = None) -> Any:
        """``call(channel)``; None when it raised ``absent`` (a 404: the channel is reopened).

        A connection that went away since the last use (broker restarted, idle cut) is
        reconnected and the call tried once more; a second failure propagates.
        """
        for attempt in (1, 2):
            had_connection = self._conn is not None
            channel = self.channel()
            self.commands += 1
            try:
                return call(channel)
            except Exception as exc:
                if absent is not None and isinstance(exc, absent):
                    self._channel = None  # the broker closed it
                    return None
                self.close()
                if attempt == 2 or not had_connection or not _connection_lost(exc):
                    raise
        return None

    def close(self) -> None:
        """Drop the channel and the connection."""
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:
                pass


def _connection_lost(exc: Exception) -> bool:
    from amqp.exceptions import ConnectionError as AmqpConnectionError
    from amqp.exceptions import RecoverableConnectionError

    return isinstance(
        exc, OSError | AmqpConnectionError | RecoverableConnectionError
    ) and not isinstance(exc, TimeoutError)


class AmqpQueuePoller:
    """Waiting and consumers per queue from AMQP, reserved from the management API.

    The same ``poll()``/``queues``/``discover()`` surface as
    :class:`tui.sources.queue_lengths.QueueLengthPoller`, so the console, ``--check`` and the
    metrics exporter take either.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        configured_queues: Sequence[str],
        management: ManagementClient | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        tally: Tally | None = None,
    ) -> None:
        self.configured_queues: tuple[str, ...] = tuple(configured_queues)
        self.management = management
        self.declarer = PassiveDeclarer(connect)
        self.tally = tally if tally is not None else Tally()
        self._clock = clock
        self._discovered: list[str] = []
        self._management_down_until = 0.0
        self._notice = ""
        #: rounds sent (one per poll, the management ask included)
        self.round_trips = 0

    @property
    def commands(self) -> int:
        """AMQP methods sent."""
        return self.declarer.commands

    @property
    def queues(self) -> list[str]:
        """Configured queues, then those the management API named (sorted)."""
        extra = sorted(set(self._discovered) - set(self.configured_queues))
        return [*self.configured_queues, *extra]

    def discover(self) -> list[str]:
        """The queues the next poll reads (the management API is asked by ``poll``)."""
        return self.queues

    def _managed(self) -> dict[str, ManagedQueue] | None:
        if self.management is None:
            return None
        if self._clock() < self._management_down_until:
            return None
        try:
            listed = self.management.queues(self.tally)
        except ManagementUnreachable as exc:
            self._management_down_until = self._clock() + MANAGEMENT_RETRY_S
            self._notice = unreachable_notice(self.management.endpoint, str(exc))
            return None
        self._notice = ""
        self._discovered = [n for n in listed if not is_internal_queue(n)]
        return listed

    def poll(self) -> QueueSnapshot:
        """One passive declare per queue (on one channel) and one management ask.

        Raises the connection's errors (broker down, timeout) to the caller.
        """
        started = time.perf_counter()
        managed = self._managed()
        queues: dict[str, QueueLength] = {}
        for name in self.queues:
            answer = self.declarer.declare(name)
            listed = managed.get(name) if managed is not None else None
            # not listed yet (the API lags AMQP by its stats interval): unknown, not 0
            reserved = listed.unacked if listed is not None else None
            if answer is None:
                queues[name] = QueueLength(
                    name, 0, {}, reserved, bands_known=False, consumers=0, declared=False
                )
                continue
            ready, consumers = answer
            queues[name] = QueueLength(
                name, ready, {}, reserved, bands_known=False, consumers=consumers
            )
        self.round_trips += 1
        unacked = sum(q.reserved or 0 for q in queues.values())
        return QueueSnapshot(
            queues=queues,
            unacked=unacked,
            reserved_exact=managed is not None,
            taken_at=time.time(),
            duration=time.perf_counter() - started,
            notice=self._notice if managed is None else "",
        )

    def close(self) -> None:
        """Close the AMQP connection."""
        self.declarer.close()


def make_amqp_poller(
    app: Any,
    settings: Any,
    configured_queues: Iterable[str],
    timeout: float = 2.0,
) -> AmqpQueuePoller:
    """The AMQP poller for ``app``'s broker (management API derived from ``settings``)."""
    management = management_client(settings, timeout) if settings is not None else None
    return AmqpQueuePoller(
        lambda: amqp_connection(app, timeout), list(configured_queues), management
    )
