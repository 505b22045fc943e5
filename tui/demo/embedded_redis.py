"""An embedded Redis-compatible server: fakeredis over TCP, with the fixes Celery workers need.

``python -m tui.demo.embedded_redis --port N`` serves until killed.  ``afirgen-tui --demo`` runs it
in a child process when no ``redis-server`` is installed, and the test suite uses it as its
last fallback.  (A child process, not a thread: every client connection costs fakeredis a
handler thread polling every 10 ms, which starves the process that hosts it.)
"""

from __future__ import annotations

import argparse
import socket


def serve_fakeredis(port: int, host: str = "127.0.0.1") -> None:
    """Run fakeredis' TCP server in this process until killed."""
    from fakeredis import TcpFakeServer

    server = TcpFakeServer((host, port), server_type="redis")
    server.RequestHandlerClass = _error_tolerant_handler()
    server.daemon_threads = True
    server.serve_forever(poll_interval=0.1)


def _error_tolerant_handler() -> type:
    """fakeredis' TCP handler with three fixes (fakeredis 2.40) that Celery workers need.

    1. An error reply keeps the connection open (see below).
    2. A blocked BRPOP of a client that has disconnected (a killed worker) never pops.
    3. An error message on several lines (a Lua traceback) is sent on one, as Redis does;
       fakeredis sends it as is, and the client can no longer parse the connection.

    fakeredis 2.40's handler closes the connection after *any* error reply, so redis-py's
    ``EVALSHA`` -> NOSCRIPT -> ``SCRIPT LOAD`` fallback (kombu's Lua scripts) fails with
    "Connection closed by server" and workers lose messages.  A real Redis keeps the
    connection; so do we, by handing the error to the writer as a reply.
    """
    from fakeredis._clients._tcp_server import TCPFakeRequestHandler
    from fakeredis._typing import RaiseErrorTypes

    class ErrorTolerantHandler(TCPFakeRequestHandler):
        def setup(self) -> None:
            super().setup()
            client = self.current_client
            read_response = client.read_response

            def read_response_or_error(**kwargs):
                try:
                    return read_response(**kwargs)
                except RaiseErrorTypes as exc:
                    # Writer.dump encodes an exception as a RESP error reply: one line.
                    if (
                        exc.args
                        and isinstance(exc.args[0], str)
                        and ("\n" in exc.args[0] or "\r" in exc.args[0])
                    ):
                        exc.args = (" ".join(exc.args[0].split()), *exc.args[1:])
                    return exc

            client.read_response = read_response_or_error  # type: ignore[method-assign]

            # A blocked BRPOP runs in this thread, so the handler cannot see its client go
            # away; fakeredis would pop the next pushed message and write it to a dead
            # socket (real Redis drops a disconnected client's blocked command at once).
            # Before each attempt, check the peer and refuse to pop for a closed one.
            fake_socket = client.get_socket()
            blocking = fake_socket._blocking
            conn = self.connection

            def peer_closed() -> bool:
                try:
                    return conn.recv(1, socket.MSG_PEEK) == b""
                except BlockingIOError:
                    return False  # open, nothing sent
                except OSError:
                    return True

            def guarded_blocking(timeout, func, shape=None):
                def attempt(first_pass: bool):
                    if peer_closed():
                        return None  # keep the data; the command times out unanswered
                    return func(first_pass)

                return blocking(timeout, attempt, shape)

            fake_socket._blocking = guarded_blocking  # type: ignore[method-assign]

    return ErrorTolerantHandler


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tui.demo.embedded_redis", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    serve_fakeredis(args.port, args.host)


if __name__ == "__main__":
    main()
