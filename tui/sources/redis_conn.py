"""A redis-py client for a broker or result-backend URL, honouring the [tls] settings.

The console and ``--check`` read queue lengths and bindings straight from Redis; they need
a plain client with bounded connect and read timeouts (a black-holed host must not hang
them).  URLs are only ever shown through :func:`afirgen_tasks.settings.mask_url`.

``sentinel://h1:26379;sentinel://h2:26379/0`` URLs give a client on the master the
sentinels name (``[sentinel] master_name``), found again on each new connection, so it
follows a failover; :func:`sentinel_master` says where the master is, or why not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

if TYPE_CHECKING:
    from afirgen_tasks.settings import Settings


def mask_url(url: str) -> str:
    # imported when needed: the event reader process opens Redis without the settings
    # module (pydantic), which costs a third of a second to import
    from afirgen_tasks.settings import mask_url

    return mask_url(url)


#: Schemes redis-py can open directly (``redis+socket`` is rewritten to ``unix``).
REDIS_SCHEMES = ("redis", "rediss", "redis+socket", "unix")
#: Redis behind Sentinel: the master is asked of the sentinels in the URL.
SENTINEL_SCHEME = "sentinel"


@dataclass(frozen=True)
class RedisOptions:
    """What :func:`redis_client` reads from the settings, as plain values.

    Picklable and free of pydantic: the event reader process
    (:mod:`tui.sources.event_process`) gets one, with the URL, over its pipe.
    """

    ssl: dict[str, Any] = field(default_factory=dict)
    tls_cert_reqs: str = "required"
    sentinel_master_name: str = ""
    sentinel: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings | RedisOptions | None) -> RedisOptions:
        if settings is None:
            return cls()
        if isinstance(settings, RedisOptions):
            return settings
        return cls(
            ssl=settings.ssl_options(),
            tls_cert_reqs=settings.tls_cert_reqs,
            sentinel_master_name=settings.sentinel_master_name,
            sentinel=settings.sentinel_kwargs(),
        )

    def ssl_options(self) -> dict[str, Any]:
        return dict(self.ssl)

    def sentinel_kwargs(self) -> dict[str, Any]:
        return dict(self.sentinel)


class NotRedisError(ValueError):
    """The URL is not one redis-py can open (amqp://, memory://, ...), or a ``sentinel://``
    URL without a master name."""


class SentinelLookupError(redis.ConnectionError):
    """No sentinel answered, or none knows a healthy master by that name (message masked)."""


def is_redis_url(url: str) -> bool:
    """True when ``url`` is a Redis URL this module can open (directly or through sentinels)."""
    scheme = url.split("://", 1)[0].lower()
    return scheme in REDIS_SCHEMES or scheme == SENTINEL_SCHEME


def _no_retry_options(
    socket_connect_timeout: float | None, socket_timeout: float | None
) -> dict[str, Any]:
    return {
        "socket_connect_timeout": socket_connect_timeout,
        "socket_timeout": socket_timeout,
        "retry_on_timeout": False,
        # redis-py retries failed connects by default; a health check must fail fast.
        "retry": Retry(NoBackoff(), 0),
    }


def _sentinel(
    url: str,
    settings: Settings | RedisOptions | None,
    socket_connect_timeout: float | None,
    socket_timeout: float | None,
    **kwargs: Any,
) -> tuple[Sentinel, str, list[str]]:
    """``(Sentinel, master name, "host:port" of each sentinel)`` for a ``sentinel://`` URL.

    Like kombu, every ``;``-joined URL names a sentinel (default port 26379) and the first
    one carries the master's password, user name and db.
    """
    master_name = kwargs.pop("master_name", None) or (
        settings.sentinel_master_name if settings else ""
    )
    if not master_name:
        raise NotRedisError(
            f"{mask_url(url)} needs the master name the sentinels monitor ([sentinel] master_name)"
        )
    hosts: list[tuple[str, int]] = []
    for part in url.split(";"):
        parts = urlsplit(part.strip())
        if parts.scheme.lower() != SENTINEL_SCHEME or not parts.hostname:
            raise NotRedisError(
                f"{mask_url(url)}: every ;-joined URL must be sentinel://host[:port]"
            )
        hosts.append((parts.hostname, parts.port or 26379))
    first_url = url.split(";", 1)[0]
    first = urlsplit(first_url)
    master: dict[str, Any] = {
        **_no_retry_options(socket_connect_timeout, socket_timeout),
        "db": redis_db(first_url),
    }
    if first.password:
        master["password"] = unquote(first.password)
    if first.username:
        master["username"] = unquote(first.username)
    master.update(kwargs)
    sentinel_options = settings.sentinel_kwargs() if settings is not None else {}
    # The sentinels are asked within the caller's timeouts too (--check's budget).
    timeouts = [
        t
        for t in (socket_connect_timeout, socket_timeout, sentinel_options.get("socket_timeout"))
        if t
    ]
    if timeouts:
        sentinel_options["socket_timeout"] = sentinel_options["socket_connect_timeout"] = min(
            timeouts
        )
    sentinel_options["retry"] = Retry(NoBackoff(), 0)
    sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_options, **master)
    return sentinel, master_name, [f"{h}:{p}" for h, p in hosts]


def sentinel_master(
    url: str,
    settings: Settings | RedisOptions | None = None,
    *,
    socket_timeout: float | None = 5.0,
    **kwargs: Any,
) -> tuple[str, int]:
    """The ``(host, port)`` of the master the sentinels of ``url`` name, asking each in turn.

    Raises :class:`SentinelLookupError` with one line: no sentinel answered (with the first
    error), or those that answered know no master by that name (naming the ones they do
    monitor), or report it down.
    """
    sentinel, name, addresses = _sentinel(url, settings, socket_timeout, socket_timeout, **kwargs)
    errors: list[str] = []
    known: set[str] = set()
    down = False
    try:
        for address, node in zip(addresses, sentinel.sentinels, strict=True):
            try:
                masters = cast(dict[str, Any], node.sentinel_masters())
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError) as exc:
                errors.append(
                    f"{address}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                )
                continue
            known.update(str(n) for n in masters)
            state = masters.get(name)
            if state and sentinel.check_master_state(state, name):
                return str(state["ip"]), int(state["port"])
            down = down or bool(state)
    finally:
        for node in sentinel.sentinels:
            node.close()
    if len(errors) == len(addresses):
        raise SentinelLookupError(f"no sentinel answered ({'; '.join(errors)})")
    if down:
        raise SentinelLookupError(
            f"the sentinels report master {name!r} down (or no master yet after a failover)"
        )
    shown = ", ".join(sorted(known)) or "none"
    raise SentinelLookupError(
        f"the sentinels know no master named {name!r} (they monitor: {shown})"
    )


def redis_client(
    url: str,
    settings: Settings | RedisOptions | None = None,
    *,
    socket_connect_timeout: float | None = 5.0,
    socket_timeout: float | None = 5.0,
    **kwargs: Any,
) -> redis.Redis:
    """A ``redis.Redis`` for ``url`` (no connection is made until the first command).

    ``rediss://`` URLs get the ``[tls]`` settings (CA file, client certificate and key,
    certificate requirement); ``sentinel://`` URLs a client on the master the sentinels
    name (``settings.sentinel_master_name``, or a ``master_name`` keyword).  Raises
    :class:`NotRedisError` (message masked) for other schemes.
    """
    scheme = url.split("://", 1)[0].lower()
    if scheme == SENTINEL_SCHEME:
        sentinel, name, _ = _sentinel(
            url, settings, socket_connect_timeout, socket_timeout, health_check_interval=0, **kwargs
        )
        return sentinel.master_for(name, redis_class=redis.Redis)
    if scheme not in REDIS_SCHEMES:
        raise NotRedisError(f"{mask_url(url)} is not a Redis URL")
    if scheme == "redis+socket":
        url = "unix://" + url.split("://", 1)[1]
    options: dict[str, Any] = {
        **_no_retry_options(socket_connect_timeout, socket_timeout),
        "health_check_interval": 0,
    }
    if scheme == "rediss" and settings is not None:
        options.update(settings.ssl_options())
        if settings.tls_cert_reqs == "none":
            options["ssl_check_hostname"] = False
    options.update(kwargs)
    return redis.Redis.from_url(url, **options)


def redis_db(url: str) -> int:
    """The database number in a Redis URL (``/3`` or ``?db=3``; 0 when absent)."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    if path.isascii() and path.isdigit():
        return int(path)
    for pair in parts.query.split("&"):
        key, _, value = pair.partition("=")
        if key == "db" and value.isascii() and value.isdigit():
            return int(value)
    return 0


def broker_url_of(app: Any, settings: Any = None, broker_url: str | None = None) -> str:
    """The broker URL a console reader uses: ``broker_url``, else the settings' (Celery's own
    conf would prefer ``$CELERY_BROKER_URL``), else the app's."""
    if broker_url is None:
        broker_url = (
            settings.celery_broker_url if settings is not None else app.conf.broker_write_url
        )
    return broker_url or ""


def broker_redis_client(
    app: Any,
    settings: Any = None,
    *,
    broker_url: str | None = None,
    socket_connect_timeout: float = 5.0,
    socket_timeout: float = 5.0,
) -> redis.Redis | None:
    """A client on ``app``'s broker when it is Redis (the caller closes it), else None."""
    url = broker_url_of(app, settings, broker_url)
    if not is_redis_url(url):
        return None
    return redis_client(
        url, settings, socket_connect_timeout=socket_connect_timeout, socket_timeout=socket_timeout
    )


def as_bytes(value: Any) -> bytes:
    """A Redis reply as bytes (str from a decoding client, b'' for anything else)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return b""
