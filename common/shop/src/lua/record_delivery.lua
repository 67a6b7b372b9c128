-- Records a delivered notification once: the record, and its id at the head of the recipient's list.
-- KEYS[1] delivery record, KEYS[2] recipient's list; ARGV[1] record JSON, ARGV[2] notification id.
-- Returns 1 when recorded now, 0 when it had been recorded before.
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
