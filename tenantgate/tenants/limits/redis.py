"""Limit storage in Redis, shared by every worker and replica: one Lua script call per admission.

The scripts are called by SHA (EVALSHA) and loaded when Redis answers NOSCRIPT. All keys of one request carry the
tenant id as hash tag, so a script touches a single slot (as Redis Cluster requires). The client is the limiter's
own lean one (``resp.py``): calls made during the same event-loop iteration leave in one write and share a round
trip, while each admission still runs as its own atomic script.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from tenantgate.tenants.limits.checks import Check, CheckState, Kind, Settlement, Verdict
from tenantgate.tenants.limits.memory import Clock
from tenantgate.tenants.limits.resp import RespClient, Script, bulk

_LUA = Path(__file__).parent / "lua"
_EVALSHA = bulk("EVALSHA")
_DRY, _NOT_DRY = bulk("1"), bulk("0")
_KINDS = {kind: bulk(kind.value) for kind in Kind}


class RedisLimitStore:
    name = "redis"

    def __init__(self, client: RespClient, clock: Clock | None = None) -> None:
        """Without ``clock`` the scripts use the Redis server's clock, the one clock all replicas share."""
        self.client = client
        self.clock = clock
        self._admit = Script.of((_LUA / "admit.lua").read_text())
        self._settle = Script.of((_LUA / "settle.lua").read_text())
        self._encoded: dict[str, tuple[Kind, int, int, tuple[bytes, int, bytes, bytes | None]]] = {}

    def _pieces(self, check: Check) -> tuple[bytes, int, bytes, bytes | None]:
        """(its keys, how many, kind + limit, window or None) of a check, encoded; a month counter's period (how long
        it is kept) changes with every request, so it is encoded per request."""
        found = self._encoded.get(check.key)
        if found is not None and found[0] is check.kind and found[1] == check.limit and found[2] == check.period_ms:
            return found[3]
        storage_keys = check.storage_keys
        period = bulk(check.period_ms) if check.kind in (Kind.WINDOW, Kind.CONCURRENCY) else None
        pieces = (
            b"".join(bulk(key) for key in storage_keys),
            len(storage_keys),
            bulk(check.kind.value) + bulk(check.limit),
            period,
        )
        if len(self._encoded) >= 10_000:
            self._encoded.clear()
        self._encoded[check.key] = (check.kind, check.limit, check.period_ms, pieces)
        return pieces

    def _now(self) -> str:
        return "" if self.clock is None else str(int(self.clock()))

    async def admit(self, checks: Sequence[Check], lease: str, *, dry: bool = False) -> Verdict:
        # The command is assembled from per-check pieces encoded once (keys, kind, limit, window): per request only
        # the amounts, the lease and the clock are encoded. Same wire bytes as encode(EVALSHA, sha, n, keys, args).
        keys: list[bytes] = []
        args: list[bytes] = [bulk(self._now()), bulk(lease, cache=False), _DRY if dry else _NOT_DRY]
        key_count = 0
        for check in checks:
            pieces = self._pieces(check)
            keys.append(pieces[0])
            key_count += pieces[1]
            args.append(pieces[2])
            args.append(bulk(check.amount, cache=False))
            args.append(pieces[3] if pieces[3] is not None else bulk(check.period_ms, cache=False))
        command = b"".join(
            (
                b"*%d\r\n" % (3 + key_count + 3 + 4 * len(checks)),  # EVALSHA sha n, keys, clock lease dry, 4 per check
                _EVALSHA,
                bulk(self._admit.sha),
                bulk(key_count),
                *keys,
                *args,
            )
        )
        reply = await self.client.evalsha_command(self._admit, command)
        states = [
            CheckState(check, reply[i], reply[i + 1], reply[i + 2])
            for check, i in zip(checks, range(2, len(reply), 3), strict=True)
        ]
        return Verdict(bool(reply[1]), reply[0], states)

    def _settle_command(self, settlement: Settlement) -> bytes:
        """The settlement's EVALSHA, assembled like an admission's from per-check pieces encoded once."""
        keys: list[bytes] = []
        args: list[bytes] = [bulk(self._now()), bulk(settlement.lease, cache=False), bulk(settlement.admitted_ms)]
        key_count = 0
        for check, delta in (
            *((check, 0) for check in settlement.release),
            *settlement.window_deltas,
            *settlement.counter_deltas,
        ):
            storage_keys, count, _, period = self._pieces(check)
            keys.append(storage_keys)
            key_count += count
            args.append(_KINDS[check.kind])
            args.append(bulk(delta, cache=False))
            args.append(period if period is not None else bulk(check.period_ms))
        return b"".join(
            (
                b"*%d\r\n" % (3 + key_count + len(args)),  # EVALSHA sha n, keys, clock lease admitted, 3 per operation
                _EVALSHA,
                bulk(self._settle.sha),
                bulk(key_count),
                *keys,
                *args,
            )
        )

    async def settle(self, settlement: Settlement) -> None:
        await self.settle_nowait(settlement)

    def settle_nowait(self, settlement: Settlement) -> asyncio.Future[object]:
        """Send a request's settlement without waiting for it; the future resolves with Redis's answer. Nobody
        waits for it, so it rides along with the next admission's write (or leaves within ``DEFER_SECONDS``)."""
        return self.client.fire(self._settle, self._settle_command(settlement), urgent=False)

    async def close(self) -> None:
        await self.client.aclose()
