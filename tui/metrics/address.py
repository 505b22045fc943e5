"""``HOST:PORT`` for ``--serve-metrics`` (stdlib only: the parser imports it for every run)."""

from __future__ import annotations


def parse_listen(text: str) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT`` (``[::1]:9808`` for IPv6); ValueError saying why.

    The host is required: ``0.0.0.0:PORT`` listens on every interface, on purpose only.
    """
    value = text.strip()
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError(
            f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9808; 0.0.0.0:9808 for every interface)"
        )
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            raise ValueError(f"{text!r}: an IPv6 host is written [::1]:9808")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 host in brackets, e.g. [::1]:9808")
    if not host.isprintable() or any(c.isspace() for c in host) or "/" in host:
        raise ValueError(f"{text!r}: the host is not a hostname or an IP address")
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)
