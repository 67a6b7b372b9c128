-- Writes a task's result the way Celery's Redis backend does (SETEX + PUBLISH of the same JSON),
-- but never replaces a SUCCESS; optionally acknowledges the delivery in the same step (when the
-- results live in the broker's database), so a stored result and its ack cannot be separated.
-- KEYS[1] celery-task-meta-<id>; KEYS[2] unacked, KEYS[3] unacked_index (only with a tag).
-- ARGV[1] JSON, ARGV[2] TTL (0: none), ARGV[3] delivery tag to acknowledge (optional).
-- Returns 1 when written, 0 when a SUCCESS was already there.
if ARGV[3] and ARGV[3] ~= '' then
  redis.call('HDEL', KEYS[2], ARGV[3])
  redis.call('ZREM', KEYS[3], ARGV[3])
end
local current = redis.call('GET', KEYS[1])
if current and string.find(current, '^{%s*"status"%s*:%s*"SUCCESS"') then return 0 end
if tonumber(ARGV[2]) > 0 then
  redis.call('SETEX', KEYS[1], ARGV[2], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
