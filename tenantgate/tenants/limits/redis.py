"""Limit storage in Redis, shared by every worker and replica: one Lua script call per admission.

The scripts are registered once per client (EVALSHA, re-sent on NOSCRIPT by redis-py). All keys of one request
carry the tenant id as hash tag, so the script also runs on Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from redis.asyncio import Redis

from tenantgate.tenants.limits.checks import Check, CheckState, Settlement, Verdict
from tenantgate.tenants.limits.memory import Clock

_LUA = Path(__file__).parent / "lua"


class RedisLimitStore:
    name = "redis"

    def __init__(self, client: Redis, clock: Clock | None = None) -> None:
        """Without ``clock`` the scripts use the Redis server's clock, the one clock all replicas share."""
        self.client = client
        self.clock = clock
        self._admit = client.register_script((_LUA / "admit.lua").read_text())
        self._settle = client.register_script((_LUA / "settle.lua").read_text())

    def _now(self) -> str:
        return "" if self.clock is None else str(int(self.clock()))

    async def admit(self, checks: Sequence[Check], lease: str, *, dry: bool = False) -> Verdict:
        keys: list[str] = []
        args: list[str | int] = [self._now(), lease, "1" if dry else "0"]
        for check in checks:
            keys.extend(check.storage_keys)
            args.extend((check.kind.value, check.limit, check.amount, check.period_ms))
        reply = await self._admit(keys=keys, args=args)
        states = [
            CheckState(check, int(reply[i]), int(reply[i + 1]), int(reply[i + 2]))
            for check, i in zip(checks, range(2, len(reply), 3), strict=True)
        ]
        return Verdict(bool(reply[1]), int(reply[0]), states)

    def _settle_call(self, settlement: Settlement) -> tuple[list[str], list[str | int]]:
        keys: list[str] = []
        args: list[str | int] = [self._now(), settlement.lease, settlement.admitted_ms]
        for check in settlement.release:
            keys.append(check.key)
            args.extend((check.kind.value, 0, check.period_ms))
        for check, delta in (*settlement.window_deltas, *settlement.counter_deltas):
            keys.extend(check.storage_keys)
            args.extend((check.kind.value, delta, check.period_ms))
        return keys, args

    async def settle(self, settlement: Settlement) -> None:
        keys, args = self._settle_call(settlement)
        if keys:
            await self._settle(keys=keys, args=args)

    async def settle_many(self, settlements: Sequence[Settlement]) -> None:
        """Several requests' settlements in one round trip (a pipeline of script calls, not a transaction)."""
        calls = [call for call in map(self._settle_call, settlements) if call[0]]
        if not calls:
            return
        if len(calls) == 1:
            await self._settle(keys=calls[0][0], args=calls[0][1])
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                await self._settle(keys=keys, args=args, client=pipe)
            await pipe.execute()

    async def close(self) -> None:
        await self.client.aclose()
