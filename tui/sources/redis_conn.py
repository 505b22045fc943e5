"""A redis-py client for a broker or result-backend URL, honouring the [tls] settings.

The console and ``--check`` read queue lengths and bindings straight from Redis; they need
a plain client with bounded connect and read timeouts (a black-holed host must not hang
them).  URLs are only ever shown through :func:`afirgen_tasks.settings.mask_url`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from afirgen_tasks.settings import Settings, mask_url

#: Schemes redis-py can open directly (``redis+socket`` is rewritten to ``unix``).
REDIS_SCHEMES = ("redis", "rediss", "redis+socket", "unix")



class NotRedisError(ValueError):
    """The URL is not one redis-py can open (amqp://, sentinel://, ...)."""


def is_redis_url(url: str) -> bool:
    """True when ``url`` is a Redis URL this module can open."""
    return url.split("://", 1)[0].lower() in REDIS_SCHEMES


def redis_client(
    url: str,
    settings: Settings | None = None,
    *,
    socket_connect_timeout: float | None = 5.0,
    socket_timeout: float | None = 5.0,
    **kwargs: Any,
) -> redis.Redis:
    """A ``redis.Redis`` for ``url`` (no connection is made until the first command).

    ``rediss://`` URLs get the ``[tls]`` settings (CA file, client certificate and key,
    certificate requirement).  Raises :class:`NotRedisError` (message masked) for other
    schemes.
    """
    scheme = url.split("://", 1)[0].lower()
    if scheme not in REDIS_SCHEMES:
        raise NotRedisError(f"{mask_url(url)} is not a Redis URL")
    if scheme == "redis+socket":
        url = "unix://" + url.split("://", 1)[1]
    options: dict[str, Any] = {
        "socket_connect_timeout": socket_connect_timeout,
        "socket_timeout": socket_timeout,
        "retry_on_timeout": False,
        "health_check_interval": 0,
        # redis-py retries failed connects by default; a health check must fail fast.
        "retry": Retry(NoBackoff(), 0),
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
