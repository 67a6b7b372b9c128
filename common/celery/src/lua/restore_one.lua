-- Gives one expired delivery back to its queue if it is still exactly as it was listed
-- (same value, lease not renewed since), like kombu's WATCH/MULTI restore.
-- KEYS[1] unacked, KEYS[2] unacked_index, KEYS[3] queue list;
-- ARGV[1] tag, ARGV[2] cutoff, ARGV[3] value listed, ARGV[4] envelope to push.
-- Returns 1 when restored, 0 when the entry changed meanwhile, -1 (nothing done) when the
-- queue list holds another type.
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return 0 end
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[3] then return 0 end
if not writable(KEYS[3], 'list') then return -1 end
ack(KEYS[1], KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[4])
return 1
