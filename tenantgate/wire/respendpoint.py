"""Where a Redis is and how a connection to it starts: the URL (and the setups refused with a reason), the
transport (TCP, TLS or a Unix socket) and the first commands (AUTH, CLIENT SETNAME, SELECT).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from tenantgate.wire.respcodec import Arg, RedisConnectionError


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    unix_path: str | None
    tls: bool
    username: str | None
    password: str | None = field(repr=False)
    db: int
    client_name: str | None = None

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) or ``unix:///path?db=N``; the query
        parameter ``client_name`` names the connections (``CLIENT SETNAME``, shown by ``CLIENT LIST``).

        Anything else raises ValueError saying what is not supported - Sentinel and Cluster URLs, other schemes,
        query options this client would otherwise ignore (redis-py's ``ssl_cert_reqs``, ``socket_timeout``...) -
        and never the URL itself (it may hold a password)."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            raise ValueError("not a valid Redis URL (redis://[[user]:password@]host[:port][/db])") from None
        scheme = parts.scheme.lower()
        if "sentinel" in scheme:
            raise ValueError(
                "Redis Sentinel URLs are not supported: give the address of the current master "
                "(redis://host:port), or of a proxy that follows Sentinel's failovers"
            )
        if "cluster" in scheme:
            raise ValueError("Redis Cluster is not supported: give the address of a single Redis (redis://host:port)")
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unsupported Redis URL scheme {scheme!r} (redis://, rediss:// or unix://)")
        try:
            query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except ValueError:
            raise ValueError("the Redis URL's query string cannot be read") from None
        unknown = sorted(set(query) - _URL_OPTIONS)
        if unknown:
            raise ValueError(
                f"unsupported Redis URL option(s) {', '.join(unknown)} (supported: {', '.join(sorted(_URL_OPTIONS))})"
            )
        db_text = parts.path.lstrip("/") if scheme != "unix" else ""
        db_text = db_text or query.get("db", ["0"])[0]
        if not db_text.isdigit():
            raise ValueError("the Redis database must be a number (redis://host:port/0)")
        client_name = query["client_name"][0] if "client_name" in query else None
        if client_name is not None and (not client_name.isprintable() or " " in client_name):
            raise ValueError("the Redis URL's client_name may not hold spaces or control characters")
        if scheme == "unix" and not parts.path:
            raise ValueError("a unix:// Redis URL needs the socket's path (unix:///run/redis.sock)")
        return cls(
            host=parts.hostname or "localhost",
            port=port or 6379,
            unix_path=parts.path if scheme == "unix" else None,
            tls=scheme == "rediss",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            db=int(db_text),
            client_name=client_name,
        )


_URL_OPTIONS = frozenset({"db", "client_name"})


_P = TypeVar("_P", bound=asyncio.Protocol)


async def open_protocol(endpoint: Endpoint, factory: Callable[[], _P]) -> _P:
    loop = asyncio.get_running_loop()
    if endpoint.unix_path is not None:
        _, protocol = await loop.create_unix_connection(factory, endpoint.unix_path)
    else:
        context = ssl.create_default_context() if endpoint.tls else None
        _, protocol = await loop.create_connection(factory, endpoint.host, endpoint.port, ssl=context)
    return protocol


def handshake_calls(endpoint: Endpoint, *, select_db: bool = True) -> list[tuple[Arg, ...]]:
    calls: list[tuple[Arg, ...]] = []
    if endpoint.password is not None:
        user = (endpoint.username,) if endpoint.username else ()
        calls.append(("AUTH", *user, endpoint.password))
    if endpoint.client_name:
        calls.append(("CLIENT", "SETNAME", endpoint.client_name))
    if endpoint.db and select_db:
        calls.append(("SELECT", endpoint.db))
    return calls


class RedisRefused(RedisConnectionError):
    """The server answers but is not one this client can use (the message says what it is and what to do)."""


SERVER_CHECK: tuple[tuple[Arg, ...], ...] = (("ROLE",), ("INFO", "cluster"))
"""Sent after the first commands of every connection, and by readiness checks."""


def server_refusal(endpoint: Endpoint, role: object, cluster_info: object) -> str | None:
    """Why the server that answered ``SERVER_CHECK`` with ``role`` and ``cluster_info`` cannot be used, or None.

    Writes on a replica fail (READONLY), so limits would silently fall back to per-process memory; a Cluster node
    answers MOVED for keys on other nodes, which this client does not follow. A reply that is an error (an ACL
    without ROLE or INFO, a managed Redis that renamed them) proves nothing either way: the server is not refused
    for it, and the replies to later commands still are checked."""
    where = endpoint.unix_path or f"{endpoint.host}:{endpoint.port}"
    if isinstance(role, list) and role and isinstance(role[0], bytes):
        kind = role[0].decode(errors="replace")
        if kind in ("slave", "replica"):
            master = f"{_text(role[1])}:{role[2]}" if len(role) >= 3 else "its master"
            return (
                f"Redis at {where} is a read-only replica (ROLE: replica of {master}), so every limit check would "
                "fail: give the address of the current master, or of a proxy that follows Sentinel's failovers"
            )
        if kind == "sentinel":
            return f"Redis at {where} is a Sentinel, not a Redis: give the address of the current master"
    if isinstance(cluster_info, bytes) and b"cluster_enabled:1" in cluster_info:
        return (
            f"Redis at {where} is a Redis Cluster node (cluster_enabled:1), which is not supported: "
            "give the address of a single Redis (redis://host:port)"
        )
    return None


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
