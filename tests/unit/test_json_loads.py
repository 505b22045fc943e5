"""The event reader's JSON decoding (msgspec, the stdlib for what msgspec refuses) reads
every input as ``json.loads`` does, and fails where it fails (issue 17)."""

from __future__ import annotations

import base64
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tui.sources.redis_events import MessageDecoder, json_loads
from tui.sources.validate import Tally


def same(a: object, b: object) -> bool:
    """Equal, NaN included, and of the same types all the way down (1 is not 1.0)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)  # type: ignore[index]
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    return a == b


def outcome(loads, data):
    try:
        return ("ok", loads(data))
    except RecursionError:
        return ("error", "RecursionError")
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return ("error", "ValueError")


EDGES = [
    b'{"a": NaN, "b": Infinity, "c": -Infinity}',
    b'{"a": 1e400, "b": -1e400, "c": 1e-400}',
    b'{"a": 123456789012345678901234567890, "b": -9223372036854775809}',
    b'{"a": 1.0, "b": 1, "c": -0, "d": -0.0, "e": 1E3}',
    b'{"a": "\\ud800", "b": "\\udc00x", "c": "\\ud83d\\ude00"}',
    b'{"a": 1, "a": 2}',
    b'"\xff"',
    b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
    "\udcff".encode("utf-8", "surrogatepass"),
    b"[" * 5000 + b"]" * 5000,
    b'  {"a" : [1 , 2] }\n',
    b'{"a": 1} x',
    b"",
    b"{",
    b'{"a": tru}',
    b"01",
    b'"\\x41"',
    b'{"\\u0000": "\\u001b[31m"}',
    '{"ü": "ß"}'.encode(),
    '{"ü": "ß"}',  # str, as a plain body arrives
    '{"a": "\ud800"}',  # a str holding a lone surrogate (msgspec cannot encode it)
    '"\udcff x"',
]


@pytest.mark.parametrize("data", EDGES)
def test_reads_and_fails_as_the_stdlib(data):
    mine, stdlib = outcome(json_loads, data), outcome(json.loads, data)
    assert mine[0] == stdlib[0], (mine, stdlib)
    if mine[0] == "ok":
        assert same(mine[1], stdlib[1]), (mine, stdlib)
    else:
        assert mine[1] == stdlib[1]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans())
def test_any_json_text_reads_as_the_stdlib_reads_it(value, ascii_only):
    text = json.dumps(value, ensure_ascii=ascii_only)
    for data in (text, text.encode("utf-8", "surrogatepass")):
        mine, stdlib = outcome(json_loads, data), outcome(json.loads, data)
        assert mine[0] == stdlib[0]
        if mine[0] == "ok":
            assert same(mine[1], stdlib[1])


def _envelope(body: str) -> bytes:
    return json.dumps(
        {
            "body": body,
            "content-type": "application/json",
            "content-encoding": "utf-8",
            "properties": {"body_encoding": "base64"},
        }
    ).encode()


@pytest.mark.parametrize(
    "body",
    [
        "eyJ0eXBlIjogIngifQ= =",  # a space
        "eyJ0eXBlIjogIngifQ==\n",  # a newline
        "eyJ0eXBl*IjogIngifQ==",  # outside the alphabet
        "eyJ0eXBlIjogIngifQ==eyJ0",  # data after the padding
        "=eyJ0eXBlIjogIngifQ=",  # padding first
        "eyJ0eXBlIjogIngifQ",  # padding missing
        "ëyJ0eXBlIjogIngifQ==",  # not ASCII
    ],
)
def test_a_base64_body_is_read_strictly(body):
    tally = Tally()
    assert MessageDecoder(tally).decode(_envelope(body)) is None
    assert tally.invalid == 1 and tally.last.startswith("undecodable message"), tally.reasons


def test_a_kombu_base64_body_is_read():
    body = base64.b64encode(json.dumps({"type": "task-sent", "uuid": "u1"}).encode()).decode()
    assert MessageDecoder(Tally()).decode(_envelope(body)) == {"type": "task-sent", "uuid": "u1"}
