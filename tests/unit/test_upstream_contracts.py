"""The private upstream names this code leans on still exist, in the shape it expects.

Each block names the file that depends on the names and what to revisit when one of these
tests fails after an upgrade.  The pins in pyproject.toml are to the minor version of each
package for the same reason: an upgrade is a deliberate step that runs this module first.
"""

from __future__ import annotations

import inspect

import pytest

# ---- kombu: afirgen_tasks/redis_transport.py ----------------------------------------------
# The atomic-fetch channel overrides these methods of kombu's Redis channel and calls them
# through super(); it also reads the attributes below.  If one fails, diff kombu's
# transport/redis.py against 5.7 and run tests/integration/test_atomic_fetch.py.
KOMBU_CHANNEL_METHODS = {
    "_brpop_start": ["timeout"],
    "_brpop_read": [],
    "_poll_error": ["type"],
    "_put": ["queue", "message"],
    "_do_restore_message": ["payload", "exchange", "routing_key", "pipe", "leftmost"],
    "_basic_cancel": ["consumer_tag"],
    "_q_for_pri": ["queue", "pri"],
    "_get_message_priority": ["message", "reverse"],
    "_lookup": ["exchange", "routing_key"],
}
KOMBU_CHANNEL_ATTRS = (
    "from_transport_options",
    "priority_steps",
    "unacked_key",
    "unacked_index_key",
    "unacked_mutex_key",
    "sep",
)


def test_kombu_redis_channel_internals_used_by_the_transport_exist():
    from kombu.transport import redis as kombu_redis

    channel = kombu_redis.Channel
    for name, params in KOMBU_CHANNEL_METHODS.items():
        method = getattr(channel, name, None)
        assert callable(method), (
            f"kombu Channel.{name} is gone: revisit afirgen_tasks/redis_transport.py"
        )
        names = list(inspect.signature(method).parameters)
        for param in params:
            assert param in names, f"kombu Channel.{name} lost its {param!r} parameter ({names})"
    for name in KOMBU_CHANNEL_ATTRS:
        assert hasattr(channel, name), f"kombu Channel.{name} is gone"
    assert callable(getattr(kombu_redis.QoS, "append", None))
    # The poller state the transport inspects.
    source = inspect.getsource(kombu_redis.Channel)
    for name in ("_in_poll", "_queue_cycle", "active_queues", "brpop_timeout"):
        assert name in source, f"kombu Channel no longer uses {name}"


def test_our_transport_still_overrides_what_it_means_to():
    from kombu.transport import redis as kombu_redis

    from afirgen_tasks import redis_transport

    for name in (
        "_brpop_start",
        "_brpop_read",
        "_poll_error",
        "_put",
        "_do_restore_message",
        "_basic_cancel",
    ):
        ours = getattr(redis_transport.Channel, name)
        assert ours is not getattr(kombu_redis.Channel, name), f"{name} is no longer overridden"
    assert issubclass(redis_transport.Transport, kombu_redis.Transport)
    assert redis_transport.Transport.Channel is redis_transport.Channel


# ---- fakeredis: tui/demo/embedded_redis.py (the --demo broker when no redis-server) -------------
# The embedded server subclasses fakeredis' TCP request handler to keep connections open after
# an error reply and to drop a disconnected client's blocked BRPOP.  If one fails, re-read
# fakeredis/_clients/_tcp_server.py and the socket's _blocking in the new version.


def test_fakeredis_private_modules_used_by_the_embedded_server_exist():
    pytest.importorskip("lupa")
    from fakeredis import TcpFakeServer  # noqa: F401
    from fakeredis._clients._tcp_server import TCPFakeRequestHandler
    from fakeredis._typing import RaiseErrorTypes

    assert isinstance(RaiseErrorTypes, tuple) and RaiseErrorTypes
    assert callable(getattr(TCPFakeRequestHandler, "setup", None))
    source = inspect.getsource(TCPFakeRequestHandler)
    assert "current_client" in source, "TCPFakeRequestHandler.current_client is gone"
    from fakeredis._socket._base import BaseFakeSocket

    assert callable(getattr(BaseFakeSocket, "_blocking", None)), (
        "fakeredis socket _blocking is gone"
    )
    assert list(inspect.signature(BaseFakeSocket._blocking).parameters)[1:3] == ["timeout", "func"]


def test_the_embedded_server_still_starts_and_survives_an_error_reply():
    """Behaviour, not only names: a script error leaves the connection usable."""
    pytest.importorskip("lupa")
    import redis

    from tests.support.redis_server import find_redis

    server = find_redis(force="fakeredis")
    try:
        client = redis.Redis(host=server.host, port=server.port, socket_timeout=5)
        with pytest.raises(redis.ResponseError):
            client.eval("error('boom\\nsecond line')", 0)
        assert client.ping()
        client.close()
    finally:
        server.stop()


# ---- redis-py: tui/sources/redis_events.py (Subscription) ------------------------------------
# The event readers let redis-py open the connection (TLS, AUTH, sentinel), send PSUBSCRIBE
# with it, then read its socket themselves and parse with their own hiredis.Reader.  If this
# fails, find where the new redis-py keeps a connected Connection's socket.
def test_redis_py_connection_keeps_its_socket_in__sock(redis_server):
    import socket

    import hiredis
    import redis

    client = redis.Redis(host=redis_server.host, port=redis_server.port, socket_timeout=5)
    try:
        connection = client.connection_pool.get_connection()
        assert isinstance(connection._sock, socket.socket)
        connection.send_command("PING")
        reader = hiredis.Reader()
        data = connection._sock.recv(1024)
        reader.feed(data, 0, len(data))
        assert reader.gets() in (b"PONG", "PONG")
        assert reader.gets() is False
        connection.disconnect()
        assert connection._sock is None
    finally:
        client.close()
