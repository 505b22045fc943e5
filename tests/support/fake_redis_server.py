"""``python -m tests.support.fake_redis_server --port N``: fakeredis over TCP, the last fallback."""

from __future__ import annotations

import argparse

from tests.support.redis_server import serve_fakeredis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    serve_fakeredis(args.port, args.host)


if __name__ == "__main__":
    main()
