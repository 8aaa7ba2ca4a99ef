"""Limit storage in Redis, shared by every worker and replica: one Lua script call per admission.

The scripts are called by SHA (EVALSHA) and loaded when Redis answers NOSCRIPT. All keys of one request carry the
tenant id as hash tag, so a script touches a single slot (as Redis Cluster requires). The client is the process's
lean one (``wire/resp.py``, shared with the rest of the gateway): calls made during the same event-loop iteration
leave in one write and share a round trip, while each admission still runs as its own atomic script.

Credit (``credit=True``, the setting ``TENANTGATE_LIMITS_LOCAL_CREDIT``): a busy principal whose limits are all
windows (RPM, TPM, RPD) is granted, with an admission, room for k more requests like it, charged in Redis at once
into the current bucket of every window. The process then admits those requests itself, without a round trip,
until the bucket ends (minus a margin for clock uncertainty) or the room runs out, and gives back what it did not
use. So nothing is admitted that Redis did not charge first, each request is charged into the bucket it was
admitted in, and a window never holds more than its limit: the guarantee of ``checks.py`` is unchanged. The price:
while a credit is out, other processes see its unused part as used. The script grants at most 1/16 of what is left
in each window, so near a limit no credit is given and every request asks Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tenantgate.tenants.limits.checks import Check, CheckState, Kind, Settlement, Verdict
from tenantgate.tenants.limits.memory import Clock
from tenantgate.wire.resp import RespClient, Script, bulk

_LUA = Path(__file__).parent / "lua"
_EVALSHA = bulk("EVALSHA")
_DRY, _NOT_DRY = bulk("1"), bulk("0")
_KINDS = {kind: bulk(kind.value) for kind in Kind}
_NO_CREDIT = bulk(0)

CREDIT_MAX = 1024
"""Most requests one credit may cover."""
CREDIT_START = 4
"""Credit asked for once a principal is seen twice within a second."""
CREDIT_MARGIN_MS = 25
"""A credit stops this long before its bucket ends: our estimate of the Redis clock may lag by one round trip."""
CREDIT_LIFE_MS = 1000
"""Longest a credit lasts, also where buckets are longer (a day's window has 24-minute buckets)."""
SWEEP_SECONDS = 1.0
"""How often unused credit of principals that went quiet is given back."""
IDLE_MS = 10_000
"""A principal without requests for this long is forgotten."""


@dataclass(slots=True)
class _Credit:
    checks: tuple[Check, ...]
    left: list[int]
    """Per check: amount still free to admit."""
    used: list[int]
    """Per check: the window's use as this process knows it, without the credit still free."""
    reset_ms: list[int]
    granted_at: float
    """Local clock (ms) when the grant arrived."""
    server_ms: int
    """Redis's clock at the grant: the bucket every request admitted from this credit is charged in."""
    expires: float
    """Local clock (ms) from which the credit is not used any more."""
    granted: int
    taken: int = 0


@dataclass(slots=True)
class _Account:
    """Credit bookkeeping of one set of checks (one principal's limits)."""

    credit: _Credit | None = None
    last_admit: float = float("-inf")
    asking: bool = False
    """A credit is being asked for: the principal's other requests meanwhile ask Redis without one."""


_SEED_LUA = """
local version = tonumber(ARGV[4])
if redis.call('EXISTS', KEYS[1]) == 1 and (tonumber(redis.call('GET', KEYS[3])) or 0) >= version then
    return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if version > 0 then
    redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[3])
else
    redis.call('DEL', KEYS[3])
end
return 1
"""


class RedisLimitStore:
    name = "redis"

    def __init__(self, client: RespClient, clock: Clock | None = None, *, credit: bool = False) -> None:
        """Without ``clock`` the scripts use the Redis server's clock, the one clock all replicas share."""
        self.client = client
        self.clock = clock
        self.credit = credit
        self._accounts: dict[tuple[str, ...], _Account] = {}
        self._credit_of: dict[str, tuple[_Credit, int]] = {}  # check key -> live credit and the check's index in it
        self._refunds: set[asyncio.Future[object]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self.credit_admissions = 0
        """Requests admitted from a credit, without a round trip (the others are admitted by the script)."""
        self._admit = Script.of((_LUA / "admit.lua").read_text())
        self._settle = Script.of((_LUA / "settle.lua").read_text())
        self._encoded: dict[str, tuple[Kind, int, int, int, tuple[bytes, int, bytes, bytes | None]]] = {}

    def _pieces(self, check: Check) -> tuple[bytes, int, bytes, bytes | None]:
        """(its keys, how many, kind + limit (+ a month counter's version), window or None) of a check, encoded; a
        month counter's period (how long it is kept) changes with every request, so it is encoded per request."""
        found = self._encoded.get(check.key)
        if (
            found is not None
            and found[0] is check.kind
            and found[1] == check.limit
            and found[2] == check.period_ms
            and found[3] == check.version
        ):
            return found[4]
        storage_keys = check.storage_keys
        period = bulk(check.period_ms) if check.kind in (Kind.WINDOW, Kind.CONCURRENCY) else None
        head = bulk(check.kind.value) + bulk(check.limit)
        if check.kind is Kind.COUNTER:
            head += bulk(check.version)
        pieces = (b"".join(bulk(key) for key in storage_keys), len(storage_keys), head, period)
        if len(self._encoded) >= 10_000:
            self._encoded.clear()
        self._encoded[check.key] = (check.kind, check.limit, check.period_ms, check.version, pieces)
        return pieces

    def _now(self) -> str:
        return "" if self.clock is None else str(int(self.clock()))

    def _local_ms(self) -> float:
        return self.clock() if self.clock is not None else time.monotonic() * 1000

    async def admit(self, checks: Sequence[Check], lease: str, *, dry: bool = False) -> Verdict:
        if dry:
            return self._without_own_credit(await self._admit_in_redis(checks, lease, dry=True, want=0))
        if not self.credit or not _creditable(checks):
            return await self._admit_in_redis(checks, lease, dry=False, want=0)
        now = self._local_ms()
        names = tuple(check.key for check in checks)
        account = self._accounts.get(names)
        if account is None:
            account = self._accounts[names] = _Account()
            if self._sweeper is None:
                self._sweeper = asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._sweep)
        credit = account.credit
        want = 0
        if credit is not None:
            verdict = _take(credit, checks, now)
            if verdict is not None:
                account.last_admit = now
                self.credit_admissions += 1
                return verdict
            # Used up (ask for twice as much), or its bucket ended (ask for twice what was used), or limits changed.
            want = 2 * credit.granted if now < credit.expires else 2 * credit.taken
            self._drop(account)
        elif now - account.last_admit < 1000:
            want = CREDIT_START
        account.last_admit = now
        if want == 0 or account.asking:
            return await self._admit_in_redis(checks, lease, dry=False, want=0)
        account.asking = True
        try:
            return await self._admit_in_redis(checks, lease, dry=False, want=min(want, CREDIT_MAX))
        finally:
            account.asking = False

    async def _admit_in_redis(self, checks: Sequence[Check], lease: str, *, dry: bool, want: int) -> Verdict:
        # The command is assembled from per-check pieces encoded once (keys, kind, limit, window): per request only
        # the amounts, the lease and the clock are encoded. Same wire bytes as encode(EVALSHA, sha, n, keys, args).
        keys: list[bytes] = []
        args: list[bytes] = [
            bulk(self._now()),
            bulk(lease, cache=False),
            _DRY if dry else _NOT_DRY,
            bulk(want, cache=False) if want else _NO_CREDIT,
        ]
        key_count = 0
        counters = 0
        for check in checks:
            pieces = self._pieces(check)
            keys.append(pieces[0])
            key_count += pieces[1]
            counters += check.kind is Kind.COUNTER
            args.append(pieces[2])
            args.append(bulk(check.amount, cache=False))
            args.append(pieces[3] if pieces[3] is not None else bulk(check.period_ms, cache=False))
        command = b"".join(
            (
                # EVALSHA sha n, keys, clock lease dry want, 4 each (a month counter 5: its version)
                b"*%d\r\n" % (3 + key_count + 4 + 4 * len(checks) + counters),
                _EVALSHA,
                bulk(self._admit.sha),
                bulk(key_count),
                *keys,
                *args,
            )
        )
        reply = await self.client.evalsha_command(self._admit, command)
        states = [
            CheckState(check, reply[i], reply[i + 1], reply[i + 2], reply[i + 3])
            for check, i in zip(checks, range(3, len(reply), 4), strict=True)
        ]
        verdict = Verdict(bool(reply[1]), reply[0], states)
        if reply[2] > 0:
            self._grant(checks, verdict, reply[2])
        return verdict

    # --- credit ---------------------------------------------------------------------------------------------------

    def _grant(self, checks: Sequence[Check], verdict: Verdict, granted: int) -> None:
        now = self._local_ms()
        server_ms = verdict.now_ms
        life = min((server_ms // c.bucket_ms + 1) * c.bucket_ms - server_ms for c in checks) - CREDIT_MARGIN_MS
        life = min(life, CREDIT_LIFE_MS)
        credit = _Credit(
            checks=tuple(checks),
            left=[granted * c.amount for c in checks],
            used=[state.used for state in verdict.states],
            reset_ms=[state.reset_ms for state in verdict.states],
            granted_at=now,
            server_ms=server_ms,
            expires=now + life,
            granted=granted,
        )
        account = self._accounts.setdefault(tuple(c.key for c in checks), _Account(last_admit=now))
        if account.credit is not None:  # another admission of the same principal was granted first
            self._drop(account)
        account.credit = credit
        for index, check in enumerate(checks):
            self._credit_of[check.key] = (credit, index)

    def _without_own_credit(self, verdict: Verdict) -> Verdict:
        """A look at the limits (``dry``): Redis counts this process's unused credit as used; take it out. Other
        processes' unused credit cannot be told apart and stays in."""
        if not self._credit_of:
            return verdict
        states = []
        for state in verdict.states:
            found = self._credit_of.get(state.check.key)  # until given back (also once over), it is in Redis
            if found is not None:
                used = max(0, state.used - found[0].left[found[1]])
                state = CheckState(state.check, used, state.reset_ms, state.retry_ms, state.reserved)
            states.append(state)
        return Verdict(verdict.admitted, verdict.now_ms, states)

    def _drop(self, account: _Account) -> None:
        """Give back what is left of the account's credit to the bucket it was charged in."""
        credit = account.credit
        if credit is None:
            return
        account.credit = None
        for check in credit.checks:
            if self._credit_of.get(check.key, (None,))[0] is credit:
                del self._credit_of[check.key]
        deltas = [(check, -left) for check, left in zip(credit.checks, credit.left, strict=True) if left > 0]
        if deltas:
            refund = Settlement(window_deltas=deltas, admitted_ms=credit.server_ms)
            future = self.client.fire(self._settle, self._settle_command(refund), urgent=False)
            self._refunds.add(future)
            future.add_done_callback(self._refunded)

    def _refunded(self, future: asyncio.Future[object]) -> None:
        # A lost refund leaves the unused credit counted until its bucket leaves the window: stricter, never looser.
        self._refunds.discard(future)
        if not future.cancelled():
            future.exception()

    def _sweep(self) -> None:
        self._sweeper = None
        now = self._local_ms()
        for names, account in list(self._accounts.items()):
            if account.credit is not None and now >= account.credit.expires:
                self._drop(account)  # what is left goes back, so other processes may use it
            if account.credit is None and now - account.last_admit > IDLE_MS:
                del self._accounts[names]
        if self._accounts:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._sweep)

    def _absorb(self, settlement: Settlement) -> Settlement | None:
        """Apply the window corrections that fall into a live credit's bucket to that credit; the rest, if any, is
        returned for Redis. A correction in the credit's bucket is the same as one in Redis once the credit's unused
        part is given back."""
        now = self._local_ms()
        rest: list[tuple[Check, int]] = []
        for check, delta in settlement.window_deltas:
            found = self._credit_of.get(check.key)
            if found is not None:
                credit, index = found
                width = check.bucket_ms
                same_bucket = settlement.admitted_ms // width == credit.server_ms // width
                if now < credit.expires and same_bucket and delta <= credit.left[index]:
                    credit.left[index] -= delta
                    credit.used[index] += delta
                    continue
            rest.append((check, delta))
        if not rest and not settlement.release and not settlement.counter_deltas:
            return None
        settlement.window_deltas = rest
        return settlement

    def _settle_command(self, settlement: Settlement) -> bytes:
        """The settlement's EVALSHA, assembled like an admission's from per-check pieces encoded once."""
        keys: list[bytes] = []
        args: list[bytes] = [bulk(self._now()), bulk(settlement.lease, cache=False), bulk(settlement.admitted_ms)]
        key_count = 0
        for check, delta, released in (
            *((check, 0, 0) for check in settlement.release),
            *((check, delta, 0) for check, delta in settlement.window_deltas),
            *settlement.counter_deltas,
        ):
            storage_keys, count, _, period = self._pieces(check)
            keys.append(storage_keys)
            key_count += count
            args.append(_KINDS[check.kind])
            args.append(bulk(delta, cache=False))
            args.append(period if period is not None else bulk(check.period_ms))
            args.append(bulk(released, cache=False) if released else _NO_CREDIT)
        return b"".join(
            (
                b"*%d\r\n" % (3 + key_count + len(args)),  # EVALSHA sha n, keys, clock lease admitted, 4 per operation
                _EVALSHA,
                bulk(self._settle.sha),
                bulk(key_count),
                *keys,
                *args,
            )
        )

    async def seed(self, check: Check, value: int, reserved: int = 0) -> bool:
        """Set a month counter the store did not hold to the ledger's total, unless another process did first, of
        which ``reserved`` is held (by batches still running); True if this call set it. The counter and what it
        holds are set together, in one script: holds of the counter that was lost are not carried over, since the
        new total does not include them (settle.lua then charges those requests their whole amount). A counter of an
        older version than the check's is replaced the same way (the tenant's limits changed since it was seeded)."""
        key, held, version = check.storage_keys
        period = max(1, check.period_ms)
        landed = await self.client.execute(
            "EVAL", _SEED_LUA, 3, key, held, version, value, reserved, period, check.version
        )
        return bool(landed == 1)

    async def settle(self, settlement: Settlement) -> None:
        future = self.settle_nowait(settlement)
        if future is not None:
            await future

    def settle_nowait(self, settlement: Settlement) -> asyncio.Future[object] | None:
        """Send a request's settlement without waiting for it; the future resolves with Redis's answer. Nobody
        waits for it, so it rides along with the next admission's write (or leaves within ``DEFER_SECONDS``).
        None: it was settled against a live credit, with nothing to send."""
        if self._credit_of and settlement.window_deltas:
            remaining = self._absorb(settlement)
            if remaining is None:
                return None
            settlement = remaining
        return self.client.fire(self._settle, self._settle_command(settlement), urgent=False)

    async def close(self) -> None:
        """Give back every unused credit. The client stays open: it is the process's (platform/runtime.py)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for account in self._accounts.values():
            self._drop(account)
        self._accounts.clear()
        if self._refunds:
            await asyncio.wait(set(self._refunds), timeout=2.0)


def _creditable(checks: Sequence[Check]) -> bool:
    return bool(checks) and all(check.kind is Kind.WINDOW and check.amount > 0 for check in checks)


def _take(credit: _Credit, checks: Sequence[Check], now: float) -> Verdict | None:
    """Admit one request from a credit, or None if it has no room for it (or has ended, or the limits changed)."""
    if now >= credit.expires or len(checks) != len(credit.checks):
        return None
    left = credit.left
    for index, check in enumerate(checks):
        granted = credit.checks[index]
        if check.amount > left[index] or check.limit != granted.limit or check.period_ms != granted.period_ms:
            return None
    elapsed = now - credit.granted_at
    states = []
    for index, check in enumerate(checks):
        left[index] -= check.amount
        credit.used[index] += check.amount
        states.append(CheckState(check, credit.used[index], max(0, credit.reset_ms[index] - int(elapsed)), 0))
    credit.taken += 1
    return Verdict(True, credit.server_ms + int(elapsed), states)
