-- Records a delivered notification once: the record, and its id at the head of the recipient's
-- list, which keeps only the newest ARGV[4] ids. Both live ARGV[3] seconds (the retention).
-- KEYS[1] delivery record, KEYS[2] recipient's list; ARGV[1] record JSON, ARGV[2] notification
-- id, ARGV[3] retention (s), ARGV[4] most ids a recipient's list keeps.
-- Returns 1 when recorded now, 0 when it had been recorded before.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return 1
end
return 0
