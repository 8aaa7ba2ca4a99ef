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

from tenantgate.tenants.limits.checks import Check, CheckState, Settlement, Verdict
from tenantgate.tenants.limits.memory import Clock
from tenantgate.tenants.limits.resp import Arg, RespClient, Script

_LUA = Path(__file__).parent / "lua"


class RedisLimitStore:
    name = "redis"

    def __init__(self, client: RespClient, clock: Clock | None = None) -> None:
        """Without ``clock`` the scripts use the Redis server's clock, the one clock all replicas share."""
        self.client = client
        self.clock = clock
        self._admit = Script.of((_LUA / "admit.lua").read_text())
        self._settle = Script.of((_LUA / "settle.lua").read_text())

    def _now(self) -> str:
        return "" if self.clock is None else str(int(self.clock()))

    async def admit(self, checks: Sequence[Check], lease: str, *, dry: bool = False) -> Verdict:
        keys: list[str] = []
        args: list[Arg] = [self._now(), lease, "1" if dry else "0"]
        for check in checks:
            keys.extend(check.storage_keys)
            args.extend((check.kind.value, check.limit, check.amount, check.period_ms))
        reply = await self.client.evalsha(self._admit, keys, args)
        states = [
            CheckState(check, reply[i], reply[i + 1], reply[i + 2])
            for check, i in zip(checks, range(2, len(reply), 3), strict=True)
        ]
        return Verdict(bool(reply[1]), reply[0], states)

    def _settle_call(self, settlement: Settlement) -> tuple[list[str], list[Arg]]:
        keys: list[str] = []
        args: list[Arg] = [self._now(), settlement.lease, settlement.admitted_ms]
        for check in settlement.release:
            keys.append(check.key)
            args.extend((check.kind.value, 0, check.period_ms))
        for check, delta in (*settlement.window_deltas, *settlement.counter_deltas):
            keys.extend(check.storage_keys)
            args.extend((check.kind.value, delta, check.period_ms))
        return keys, args

    async def settle(self, settlement: Settlement) -> None:
        await self.settle_nowait(settlement)

    def settle_nowait(self, settlement: Settlement) -> asyncio.Future[object]:
        """Send a request's settlement without waiting for it; the future resolves with Redis's answer. Nobody
        waits for it, so it rides along with the next admission's write (or leaves within ``DEFER_SECONDS``)."""
        keys, args = self._settle_call(settlement)
        return self.client.fire(self._settle, keys, args, urgent=False)

    def reset(self) -> None:
        self.client.reset()

    async def close(self) -> None:
        await self.client.aclose()
