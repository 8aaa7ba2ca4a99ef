-- Once a request is over: release its concurrency leases, correct window and counter charges.
-- KEYS: per operation, its storage keys (a window has two, a month counter three: value, reservations, version).
-- ARGV: now_ms ("" = this server's clock), lease id, admitted_ms, then per operation: kind, delta, period_ms,
-- released (a counter's reservation that ends now).
-- A negative window delta is refunded from the bucket the request was admitted in (if still in the window);
-- a positive one is charged now. Counters never go below zero, and a counter that no longer exists (Redis lost it)
-- is left missing, so the next admission seeds it from the ledger instead of trusting a correction alone. A counter's
-- reservations are a sum: what a settlement releases beyond what the counter still holds was admitted before the
-- counter was seeded again, so its actual amount is added whole.

local now
if ARGV[1] == '' then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
    now = tonumber(ARGV[1])
end
local lease = ARGV[2]
local admitted = tonumber(ARGV[3])
local BUCKETS = 60

local k = 1
local a = 4
while a <= #ARGV do
    local kind, delta, period, released = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
    a = a + 4
    if kind == 'w' then
        local hkey, zkey = KEYS[k], KEYS[k + 1]
        k = k + 2
        local width = math.floor(period / BUCKETS)
        if delta < 0 then
            local bucket = math.floor(admitted / width)
            local current = tonumber(redis.call('HGET', hkey, bucket))
            if current then
                local new = math.max(0, current + delta)
                redis.call('HSET', hkey, bucket, new)
                redis.call('HINCRBY', hkey, 't', new - current)
            end
        elseif delta > 0 then
            local bucket = math.floor(now / width)
            if redis.call('HINCRBY', hkey, bucket, delta) == delta then
                redis.call('ZADD', zkey, bucket, bucket)
                redis.call('PEXPIRE', hkey, period + 2 * width)
                redis.call('PEXPIRE', zkey, period + 2 * width)
            end
            redis.call('HINCRBY', hkey, 't', delta)
        end
    elseif kind == 'q' then
        local key, rkey, vkey = KEYS[k], KEYS[k + 1], KEYS[k + 2]
        k = k + 3
        if redis.call('EXISTS', key) == 1 then
            if released > 0 then
                -- A hold the counter no longer carries (Redis lost the counter while the request ran; the seed that
                -- replaced it could not see the request) is charged in full: the counter gets the actual amount.
                local reserved = tonumber(redis.call('GET', rkey)) or 0
                if reserved < released then
                    delta = delta + released - reserved
                    redis.call('SET', rkey, 0)
                else
                    redis.call('DECRBY', rkey, released)
                end
            end
            if delta ~= 0 and redis.call('INCRBY', key, delta) < 0 then redis.call('SET', key, 0, 'KEEPTTL') end
            redis.call('PEXPIRE', key, period)
            redis.call('PEXPIRE', rkey, period)
            redis.call('PEXPIRE', vkey, period)
        end
    else
        local key = KEYS[k]
        k = k + 1
        redis.call('ZREM', key, lease)
    end
end
return 1
