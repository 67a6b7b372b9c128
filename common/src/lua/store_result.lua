-- Writes a task's result the way Celery's Redis backend does (SETEX + PUBLISH of the same JSON),
-- but never replaces a SUCCESS. When the results live in the broker's database it also ends the
-- task in the same step: it acknowledges the delivery and publishes the messages the task sends
-- on, so a stored result, its ack and its follow-up messages cannot be separated.
-- KEYS[1] celery-task-meta-<id>; KEYS[2] unacked, KEYS[3] unacked_index (used with a tag);
-- KEYS[3+i] the queue list of the i-th message to publish.
-- ARGV[1] JSON, ARGV[2] TTL (0: none), ARGV[3] delivery tag to acknowledge ('' for none);
-- ARGV[3+i] the i-th message's envelope, LPUSHed as a producer does.
-- Returns 1 when written, 0 when a SUCCESS was already there (then nothing is published: the
-- run that stored it did that).
if ARGV[3] ~= '' then
  redis.call('HDEL', KEYS[2], ARGV[3])
  redis.call('ZREM', KEYS[3], ARGV[3])
end
local current = redis.call('GET', KEYS[1])
if current and string.find(current, '^{%s*"status"%s*:%s*"SUCCESS"') then return 0 end
for i = 4, #KEYS do
  redis.call('LPUSH', KEYS[i], ARGV[i])
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SETEX', KEYS[1], ARGV[2], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
