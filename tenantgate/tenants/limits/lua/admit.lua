-- Check every limit of one request and, only if all pass, charge them all (see limits/checks.py).
-- KEYS: per check, its storage keys (a window has two: the bucket hash and its ordering zset).
-- ARGV: now_ms ("" = this server's clock, shared by every replica), lease id, dry ("1" = only look),
--       credit wanted (k: how many more requests like this one the caller may admit on its own; 0 = none),
--       then per check: kind, limit, (a month counter: its version,) amount, period_ms.
-- Returns: {now_ms, admitted, credit granted (k), then per check: used, reset_ms, retry_ms, reserved}.
-- A month counter ('q': the counter, its reservations in flight, the version it was seeded at) that does not exist,
-- or was seeded at an older version than asked for (the tenant's limits changed since: spend made while it had no
-- limit reached no counter), is not trusted: its retry_ms is -2 (SEED) and nothing is charged; the limiter seeds it
-- from the ledger and asks again.
-- Credit (limits/redis.py): only when every check is a window with an amount; k is capped so that no window gives
-- away more than 1/CREDIT_SHARE of what is left in it. It is charged now, into the current bucket, like the request.

local now
if ARGV[1] == '' then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
    now = tonumber(ARGV[1])
end
local lease = ARGV[2]
local dry = ARGV[3] == '1'
local want = tonumber(ARGV[4])
local BUCKETS = 60
local CREDIT_SHARE = 16
local CREDIT_MIN_LIFE_MS = 50  -- a credit ends with its bucket: not worth granting in the bucket's last moments
local CREDIT_MIN = 4  -- smaller grants are not worth their refund: near a limit every request asks Redis

-- Drop buckets whose end has left the window; return the amount still inside it.
local function window_used(hkey, zkey, win, width)
    local last_expired = math.floor((now - win) / width) - 1
    local old = redis.call('ZRANGEBYSCORE', zkey, '-inf', last_expired)
    if #old > 0 then
        local amounts = redis.call('HMGET', hkey, unpack(old))
        local freed = 0
        for _, a in ipairs(amounts) do freed = freed + (tonumber(a) or 0) end
        redis.call('HDEL', hkey, unpack(old))
        redis.call('ZREMRANGEBYSCORE', zkey, '-inf', last_expired)
        if freed ~= 0 then redis.call('HINCRBY', hkey, 't', -freed) end
    end
    return tonumber(redis.call('HGET', hkey, 't')) or 0
end

-- Time until the oldest buckets free at least `needed`.
local function window_retry(hkey, zkey, win, width, needed)
    local buckets = redis.call('ZRANGE', zkey, 0, -1)
    if #buckets == 0 then return 1 end
    local amounts = redis.call('HMGET', hkey, unpack(buckets))
    local freed = 0
    for i, b in ipairs(buckets) do
        freed = freed + (tonumber(amounts[i]) or 0)
        if freed >= needed then
            return math.max(1, (tonumber(b) + 1) * width + win - now)
        end
    end
    return math.max(1, (tonumber(buckets[#buckets]) + 1) * width + win - now)
end

local function window_reset(zkey, win, width)
    local newest = redis.call('ZRANGE', zkey, -1, -1)
    if #newest == 0 then return 0 end
    return math.max(0, (tonumber(newest[1]) + 1) * width + win - now)
end

local checks = {}
local admitted = true
local k = 1
local a = 5
while a <= #ARGV do
    local kind, limit, version = ARGV[a], tonumber(ARGV[a + 1]), 0
    if kind == 'q' then
        version = tonumber(ARGV[a + 2])
        a = a + 1
    end
    local c = {kind = kind, limit = limit, version = version, amount = tonumber(ARGV[a + 2]),
               period = tonumber(ARGV[a + 3]), key = KEYS[k], retry = 0, reset = 0, reserved = 0}
    a = a + 4
    if c.kind == 'w' then
        c.zkey = KEYS[k + 1]
        k = k + 2
        c.width = math.floor(c.period / BUCKETS)
        c.used = window_used(c.key, c.zkey, c.period, c.width)
        if c.used + c.amount > c.limit then
            if c.amount > c.limit then
                c.retry = -1
            else
                c.retry = window_retry(c.key, c.zkey, c.period, c.width, c.used + c.amount - c.limit)
            end
        end
    elseif c.kind == 'q' then
        c.rkey, c.vkey = KEYS[k + 1], KEYS[k + 2]
        k = k + 3
        local value = redis.call('GET', c.key)
        if value and c.version > 0 and (tonumber(redis.call('GET', c.vkey)) or 0) < c.version then
            value = nil  -- seeded before the tenant's limits last changed
        end
        if not value then
            c.used = 0
            c.retry = -2  -- SEED
        else
            c.used = tonumber(value)
            c.reserved = tonumber(redis.call('GET', c.rkey)) or 0
            if c.used + c.amount > c.limit then c.retry = -1 end
        end
    else
        k = k + 1
        redis.call('ZREMRANGEBYSCORE', c.key, '-inf', now)
        c.used = redis.call('ZCARD', c.key)
        if c.used + c.amount > c.limit then c.retry = 1000 end  -- CONCURRENCY_RETRY_MS
    end
    if c.retry ~= 0 then admitted = false end
    checks[#checks + 1] = c
end

if admitted and not dry then
    for _, c in ipairs(checks) do
        if c.kind == 'w' and c.amount > 0 then
            local bucket = math.floor(now / c.width)
            -- A new bucket is ordered and extends the keys' lifetime; later hits in it only add.
            if redis.call('HINCRBY', c.key, bucket, c.amount) == c.amount then
                redis.call('ZADD', c.zkey, bucket, bucket)
                redis.call('PEXPIRE', c.key, c.period + 2 * c.width)
                redis.call('PEXPIRE', c.zkey, c.period + 2 * c.width)
            end
            redis.call('HINCRBY', c.key, 't', c.amount)
            c.used = c.used + c.amount
            c.reset = (bucket + 1) * c.width + c.period - now
        elseif c.kind == 'c' and c.amount > 0 then
            redis.call('ZADD', c.key, now + c.period, lease)
            redis.call('PEXPIRE', c.key, c.period)
            c.used = c.used + 1
        elseif c.kind == 'q' and c.amount > 0 then
            c.used = redis.call('INCRBY', c.key, c.amount)
            c.reserved = redis.call('INCRBY', c.rkey, c.amount)
            redis.call('PEXPIRE', c.key, c.period)
            redis.call('PEXPIRE', c.rkey, c.period)
            if c.version > 0 then redis.call('PEXPIRE', c.vkey, c.period) end
        end
    end
end

local granted = 0
if admitted and not dry and want > 0 then
    granted = want
    for _, c in ipairs(checks) do
        if c.kind ~= 'w' or c.amount <= 0 or (math.floor(now / c.width) + 1) * c.width - now < CREDIT_MIN_LIFE_MS then
            granted = 0
            break
        end
        granted = math.min(granted, math.floor((c.limit - c.used) / CREDIT_SHARE / c.amount))
    end
    if granted < CREDIT_MIN then granted = 0 end
    if granted > 0 then
        for _, c in ipairs(checks) do
            local bucket = math.floor(now / c.width)
            redis.call('HINCRBY', c.key, bucket, granted * c.amount)
            redis.call('HINCRBY', c.key, 't', granted * c.amount)
        end
    end
end

-- Reset of windows that were not charged: when their newest bucket leaves (charged ones know it already).
for _, c in ipairs(checks) do
    if c.kind == 'w' and (dry or not admitted or c.amount == 0) then
        c.reset = window_reset(c.zkey, c.period, c.width)
    end
end

local out = {now, admitted and 1 or 0, granted}
for _, c in ipairs(checks) do
    out[#out + 1] = c.used
    out[#out + 1] = c.reset
    out[#out + 1] = c.retry
    out[#out + 1] = c.reserved
end
return out
