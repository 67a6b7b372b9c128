-- Moves listed scheduled messages out of the schedule, each only if it is still there (another
-- worker may have moved it since it was listed), each in the same step as its push. A message
-- whose destination holds another type than a list stays in the schedule and is reported.
-- KEYS[1] schedule zset; KEYS[1+i] where the i-th message goes.
-- ARGV[3i-2] the i-th message as listed, ARGV[3i-1] the value to push, ARGV[3i] 'rpush' (back
-- to its queue, delivered next) or 'lpush' (a dead letter, newest first).
-- Returns {moved, i1, i2, ...}: how many moved, and the indexes of those refused.
local moved = 0
local out = {0}
for i = 1, #KEYS - 1 do
  if not writable(KEYS[1 + i], 'list') then
    table.insert(out, i)
  elseif redis.call('ZREM', KEYS[1], ARGV[3 * i - 2]) == 1 then
    redis.call(ARGV[3 * i] == 'lpush' and 'LPUSH' or 'RPUSH', KEYS[1 + i], ARGV[3 * i - 1])
    moved = moved + 1
  end
end
out[1] = moved
return out
