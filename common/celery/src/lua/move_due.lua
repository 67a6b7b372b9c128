-- Moves listed scheduled messages out of the schedule, each only if it is still there (another
-- worker may have moved it since it was listed), each in the same step as its push.
-- KEYS[1] schedule zset; KEYS[1+i] where the i-th message goes.
-- ARGV[3i-2] the i-th message as listed, ARGV[3i-1] the value to push, ARGV[3i] 'rpush' (back
-- to its queue, delivered next) or 'lpush' (a dead letter, newest first).
-- Returns how many moved.
local moved = 0
for i = 1, #KEYS - 1 do
  if redis.call('ZREM', KEYS[1], ARGV[3 * i - 2]) == 1 then
    redis.call(ARGV[3 * i] == 'lpush' and 'LPUSH' or 'RPUSH', KEYS[1 + i], ARGV[3 * i - 1])
    moved = moved + 1
  end
end
return moved
