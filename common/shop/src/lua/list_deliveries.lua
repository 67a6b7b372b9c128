-- One page of a recipient's delivered ids, newest first, read in one step with the numbering
-- record_delivery.lua keeps (entry i from the head is number pushed - 1 - i).
-- KEYS[1] recipient's list, KEYS[2] its push count; ARGV[1] the number of the newest entry
-- wanted ('' for the head), ARGV[2] most ids.
-- Returns {pushed, length, start index, ids}; no ids when the cursor is past the list (a
-- number it never had, e.g. from a list that expired since: everything older is gone too).
local len = redis.call('LLEN', KEYS[1])
local pushed = math.max(tonumber(redis.call('GET', KEYS[2]) or '0') or 0, len)
local start = 0
if ARGV[1] ~= '' then
  start = pushed - 1 - tonumber(ARGV[1])
end
if start < 0 or start >= len then
  return {pushed, len, start, {}}
end
return {pushed, len, start, redis.call('LRANGE', KEYS[1], start, start + tonumber(ARGV[2]) - 1)}
