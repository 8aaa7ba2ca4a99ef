"""RESP2 on the wire: commands encoded as arrays of bulk strings, replies parsed however the bytes were split, and
the errors a reply or a connection can end in. Used by the command connection (``resp.py``) and subscriptions
(``respsub.py``); no I/O here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

Arg = str | int | bytes


class RedisError(Exception):
    pass


class RedisConnectionError(RedisError):
    """Redis could not be reached, or the connection broke or spoke something that is not RESP."""


class ResponseError(RedisError):
    """Redis answered the command with an error."""


class NoScriptError(ResponseError):
    """EVALSHA of a script the server does not hold (it is loaded and called again)."""


class WrongServerError(ResponseError):
    """The server cannot take this client's commands: a read-only replica (READONLY: a failover demoted it), a
    replica cut off from its master (MASTERDOWN), or a Redis Cluster node (MOVED, ASK, CLUSTERDOWN). The connection
    that got it is dropped, so the next call reconnects and checks the server again."""


_WRONG_SERVER = frozenset({"READONLY", "MASTERDOWN", "MOVED", "ASK", "CLUSTERDOWN"})


def _reply_error(message: str) -> ResponseError:
    code = message.split(" ", 1)[0]
    if code == "NOSCRIPT":
        return NoScriptError(message)
    # A write inside a script on a replica: Redis 7 answers READONLY, older ones wrap it in a script error.
    if code in _WRONG_SERVER or "-READONLY " in message:
        return WrongServerError(message)
    return ResponseError(message)


class RedisStalled(TimeoutError):
    """Redis stayed silent for the whole stall timeout while answers were owed."""


@dataclass(slots=True)
class Script:
    """A Lua script called by its SHA1 (EVALSHA), loaded on the server when it answers NOSCRIPT."""

    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> Script:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())  # Redis names scripts by SHA1


_BULK: dict[str, bytes] = {}
"""Encoded string arguments: the limiter's keys, script SHA and kinds repeat from request to request."""
_BULK_MAX = 16_384
_SMALL_INTS = [b"$%d\r\n%d\r\n" % (len(str(i)), i) for i in range(1024)]


def encode(args: tuple[Arg, ...]) -> bytes:
    return b"".join([b"*%d\r\n" % len(args), *map(bulk, args)])


def bulk(arg: Arg, *, cache: bool = True) -> bytes:
    """One argument as a RESP bulk string (``cache=False`` for values that never repeat, e.g. lease ids)."""
    if type(arg) is int and 0 <= arg < 1024:
        return _SMALL_INTS[arg]
    if cache and type(arg) is str:
        found = _BULK.get(arg)
        if found is not None:
            return found
    data = arg if isinstance(arg, bytes) else (arg.encode() if isinstance(arg, str) else str(int(arg)).encode())
    encoded = b"$%d\r\n%b\r\n" % (len(data), data)
    if cache and type(arg) is str:
        if len(_BULK) >= _BULK_MAX:
            _BULK.clear()
        _BULK[arg] = encoded
    return encoded


class Incomplete(Exception):
    pass


def parse(buffer: bytearray, position: int) -> tuple[Any, int]:
    """One reply starting at ``position``: (value, end). Raises Incomplete when more bytes are needed."""
    line_end = buffer.find(b"\r\n", position)
    if line_end < 0:
        raise Incomplete
    kind = buffer[position]
    body = bytes(buffer[position + 1 : line_end])
    after = line_end + 2
    if kind == 58:  # ':' integer
        return int(body), after
    if kind == 36:  # '$' bulk string
        length = int(body)
        if length < 0:
            return None, after
        if len(buffer) < after + length + 2:
            raise Incomplete
        return bytes(buffer[after : after + length]), after + length + 2
    if kind == 42:  # '*' array
        count = int(body)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            if buffer[after : after + 1] == b":":  # integers (the limiter's replies) without a recursive call
                end = buffer.find(b"\r\n", after)
                if end < 0:
                    raise Incomplete
                items.append(int(buffer[after + 1 : end]))
                after = end + 2
            else:
                item, after = parse(buffer, after)
                items.append(item)
        return items, after
    if kind == 43:  # '+' simple string
        return body.decode(), after
    if kind == 45:  # '-' error
        return _reply_error(body.decode(errors="replace")), after
    raise RedisConnectionError(f"unexpected reply type {chr(kind)!r} from Redis")
