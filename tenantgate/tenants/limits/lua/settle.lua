-- Once a request is over: release its concurrency leases, correct window and counter charges.
-- KEYS: per operation, its storage keys (a window has two).
-- ARGV: now_ms ("" = this server's clock), lease id, admitted_ms, then per operation: kind, delta, period_ms.
-- A negative window delta is refunded from the bucket the request was admitted in (if still in the window);
-- a positive one is charged now. Counters never go below zero.

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
    local kind, delta, period = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    a = a + 3
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
    else
        local key = KEYS[k]
        k = k + 1
        if kind == 'c' then
            redis.call('ZREM', key, lease)
        elseif delta ~= 0 then
            if redis.call('INCRBY', key, delta) < 0 then redis.call('SET', key, 0) end
            redis.call('PEXPIRE', key, period)
        end
    end
end
return 1
