-- Records a delivered notification once: the record, and its id at the head of the recipient's
-- list, which keeps only the newest ARGV[4] ids, and the count of ids ever pushed onto that list
-- (the listing's cursor numbers entries by it: entry i from the head is number pushed - 1 - i,
-- which a push at the head does not change). All live ARGV[3] seconds (the retention).
-- KEYS[1] delivery record, KEYS[2] recipient's list, KEYS[3] its push count; ARGV[1] record
-- JSON, ARGV[2] notification id, ARGV[3] retention (s), ARGV[4] most ids a recipient's list
-- keeps. Reads first, so a key of the wrong type fails the script before any write.
-- Returns 1 when recorded now, 0 when it had been recorded before.
local len = redis.call('LLEN', KEYS[2])
-- A list written before the count existed (or outliving it) counts from its length.
local pushed = math.max(tonumber(redis.call('GET', KEYS[3]) or '0') or 0, len)
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  redis.call('SET', KEYS[3], string.format('%d', pushed + 1), 'EX', ARGV[3])
  return 1
end
return 0
