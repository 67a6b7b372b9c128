-- A task's fleet-wide rate limit, shared by every worker: GCRA with room for one start (no
-- burst), on the server's clock. A start is allowed when the fleet's next allowed time has
-- come; then that time moves one interval past now. Nothing is written when it is refused.
-- KEYS[1] the task's key: the next allowed time (whole microseconds), expiring then.
-- ARGV[1] microseconds between two starts (at least 1); ARGV[2] the caller's reference time
-- (server seconds, when it took the message), from which a wait is counted.
-- Returns 0 when the start is allowed, else the milliseconds from the reference time (or now,
-- if that is earlier) until the next allowed time, at least 1 (about one interval at most).
-- An error (nothing written) when the key holds another type.
if not writable(KEYS[1], 'string') then
  return redis.error_reply('ERR the fleet rate key holds another type than a string')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = math.max(1, math.floor(tonumber(ARGV[1]) or 1))
local next_at = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
-- A start sets it one interval ahead, never more: a time further ahead (the clock stepped
-- back, a value written by hand) is stale, as if there were none; so a wait is at most one
-- interval, and a number this script can return.
if next_at ~= next_at or next_at > now + interval then next_at = 0 end
if next_at > now then
  local since = math.min((tonumber(ARGV[2]) or now / 1000000) * 1000000, now)
  return math.max(1, math.ceil((next_at - since) / 1000))
end
-- '%.0f' writes every digit ('tostring' keeps only 14); the key outlives the time it holds.
redis.call('SET', KEYS[1], string.format('%.0f', now + interval), 'PX', math.ceil(interval / 1000) + 1)
return 0
