-- Adds revoked task ids to the fleet's set, scored by the server's clock, and forgets what is
-- past the horizon, beyond the cap (Celery's REVOKE_EXPIRES and REVOKES_MAX), or dated in the
-- future (written by something else: it would outrank every real revoke).
-- KEYS[1] revoked sorted set. ARGV[1] horizon in seconds, ARGV[2] cap, ARGV[3..] task ids.
-- Returns the score the ids were given, or false when the key holds another type.
if not writable(KEYS[1], 'zset') then return false end
local now = server_now()
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], now, ARGV[i])
end
local horizon = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '(' .. (now + 60), '+inf')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - horizon))
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[2]) + 1))
redis.call('EXPIRE', KEYS[1], horizon)
return tostring(now)
