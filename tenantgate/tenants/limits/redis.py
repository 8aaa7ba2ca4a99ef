"""Limit storage in Redis, shared by every worker and replica: one Lua script call per admission.

The scripts are registered once per client (EVALSHA, re-sent on NOSCRIPT by redis-py). All keys of one request
carry the tenant id as hash tag, so the script also runs on Redis Cluster.

Admissions that arrive while the event loop is busy with other work (under load: many per loop iteration) are
sent together as one pipeline: one round trip and one pass through redis-py's command machinery for all of them.
Pipelines call EVALSHA directly (redis-py would first ask SCRIPT EXISTS on every pipeline) and load the script
only when Redis answers NOSCRIPT. Each admission still runs as its own atomic script.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

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
        self._queued: list[tuple[list[str], list[str | int], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def _now(self) -> str:
        return "" if self.clock is None else str(int(self.clock()))

    async def admit(self, checks: Sequence[Check], lease: str, *, dry: bool = False) -> Verdict:
        keys: list[str] = []
        args: list[str | int] = [self._now(), lease, "1" if dry else "0"]
        for check in checks:
            keys.extend(check.storage_keys)
            args.extend((check.kind.value, check.limit, check.amount, check.period_ms))
        if dry:
            reply = await self._admit(keys=keys, args=args)
        else:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._queued.append((keys, args, future))
            if len(self._queued) == 1:
                # Let the other requests of this loop iteration join, then send them all at once.
                asyncio.get_running_loop().call_soon(self._send_queued)
            reply = await future
        states = [
            CheckState(check, int(reply[i]), int(reply[i + 1]), int(reply[i + 2]))
            for check, i in zip(checks, range(2, len(reply), 3), strict=True)
        ]
        return Verdict(bool(reply[1]), int(reply[0]), states)

    def _send_queued(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.get_running_loop().create_task(self._admit_many(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _admit_many(self, batch: list[tuple[list[str], list[str | int], asyncio.Future[Any]]]) -> None:
        try:
            if len(batch) == 1:
                keys, args, _ = batch[0]
                replies: list[Any] = [await self._admit(keys=keys, args=args)]
            else:
                replies = await self._pipelined(self._admit, [(keys, args) for keys, args, _ in batch])
        except BaseException as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (*_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue  # the request gave up waiting (timeout); the admission may still have counted
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _pipelined(self, script: AsyncScript, calls: Sequence[tuple[list[str], list[str | int]]]) -> list[Any]:
        """EVALSHA of ``script`` for every call in one round trip; loads the script once if Redis lacks it."""
        for attempt in (1, 2):
            async with self.client.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in replies):
                script.sha = await self.client.script_load(script.script)
                continue
            return replies
        raise AssertionError("unreachable")

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
        for reply in await self._pipelined(self._settle, calls):
            if isinstance(reply, Exception):
                raise reply

    async def close(self) -> None:
        await self.client.aclose()
