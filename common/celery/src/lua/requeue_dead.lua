-- Gives one dead letter back to its queue if it is still in the dead-letter list: the entry is
-- removed and its raw message pushed in the same step, or nothing happens.
-- KEYS[1] dead-letter list, KEYS[2] the queue list; ARGV[1] the entry, ARGV[2] the raw message.
-- Returns 1 when moved, 0 when the entry was gone, -1 (nothing done) when the queue list holds
-- another type.
if not writable(KEYS[2], 'list') then return -1 end
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
