"""The Redis client refuses a server it cannot write to - a replica, a Cluster node - when a connection starts, and
drops a connection whose server turned into one (a failover demotes the old master without closing connections)."""

from __future__ import annotations

import asyncio
import random
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from tenantgate.wire.resp import RedisRefused, RespClient, ResponseError, WrongServerError
from tenantgate.wire.respcodec import parse
from tests.support.services import own_redis_server


def _replica_options(master_url: str) -> tuple[str, ...]:
    master = urlsplit(master_url)
    return ("--replicaof", master.hostname or "127.0.0.1", str(master.port or 6379))


@pytest.fixture
def replica_url(redis_url: str) -> Iterator[str]:
    with own_redis_server(*_replica_options(redis_url)) as url:
        yield url


@pytest.fixture
def master_url() -> Iterator[str]:
    with own_redis_server() as url:
        yield url


def test_replies_that_name_the_wrong_server_are_told_apart() -> None:
    for reply in (
        b"-READONLY You can't write against a read only replica.\r\n",
        b"-MOVED 3999 127.0.0.1:6381\r\n",
        b"-ASK 3999 127.0.0.1:6381\r\n",
        b"-CLUSTERDOWN Hash slot not served\r\n",
        b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n",
        b"-ERR Error running script (call to f_x): @user_script:1: -READONLY You can't write against a read only "
        b"replica.\r\n",
    ):
        assert type(parse(bytearray(reply), 0)[0]) is WrongServerError, reply
    for reply in (b"-ERR unknown command 'ROLE'\r\n", b"-NOPERM this user has no permissions\r\n"):
        assert type(parse(bytearray(reply), 0)[0]) is ResponseError, reply


async def test_a_replica_is_refused_when_the_connection_starts(replica_url: str) -> None:
    client = RespClient.from_url(replica_url, connect_timeout=5)
    with pytest.raises(RedisRefused, match="read-only replica") as refused:
        await client.execute("PING")
    port = urlsplit(replica_url).port
    assert f"127.0.0.1:{port}" in str(refused.value) and "current master" in str(refused.value)
    with pytest.raises(RedisRefused):
        await client.check()
    await client.aclose()


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too, and below 65536."""
    for _ in range(100):
        port = random.randrange(20_000, 45_000)
        if all(_free(candidate) for candidate in (port, port + 10_000)):
            return port
    raise RuntimeError("no free pair of ports for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_a_cluster_node_is_refused_when_the_connection_starts(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.conf"
    options = ("--cluster-enabled", "yes", "--cluster-config-file", str(nodes))
    with own_redis_server(*options, port=_cluster_port()) as url:
        client = RespClient.from_url(url, connect_timeout=5)
        with pytest.raises(RedisRefused, match="Cluster node"):
            await client.execute("SET", "k", "v")
        await client.aclose()


async def test_a_master_demoted_under_a_connection_fails_a_write_then_is_refused(
    master_url: str, redis_url: str
) -> None:
    writer = RespClient.from_url(master_url, connect_timeout=5)
    checker = RespClient.from_url(master_url, connect_timeout=5)
    key = f"tgtest-{uuid.uuid4().hex[:8]}"
    assert await writer.execute("SET", key, "1") == "OK"
    await checker.check()  # a master: no complaint
    admin = redis.Redis.from_url(master_url)
    try:
        admin.replicaof(*_replica_options(redis_url)[1:])
        # The connections stay open; the first write on one fails, and takes the connection with it.
        with pytest.raises(WrongServerError, match="READONLY"):
            await writer.execute("SET", key, "2")
        assert writer._connection is None or writer._connection.closed
        with pytest.raises(RedisRefused, match="read-only replica"):
            await writer.execute("GET", key)  # reconnects, and the new connection is checked first
        # A readiness check finds it out without any write, and drops the connection it found.
        with pytest.raises(RedisRefused):
            await checker.check()
        # Promoted again (a failover back): the next call connects and works.
        admin.replicaof("NO", "ONE")
        await asyncio.sleep(0)
        assert await writer.execute("SET", key, "3") == "OK"
        await checker.check()
    finally:
        admin.close()
        await writer.aclose()
        await checker.aclose()


async def test_a_user_not_allowed_role_or_info_still_connects(master_url: str) -> None:
    admin = redis.Redis.from_url(master_url)
    try:
        admin.acl_setuser("limiter", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-role", "-info"])
    finally:
        admin.close()
    client = RespClient.from_url(master_url.replace("redis://", "redis://limiter:pw@"), connect_timeout=5)
    assert await client.execute("SET", "k", "v") == "OK"
    await client.check()  # the check cannot tell, so it does not refuse; the server answered
    await client.aclose()
