-- Publishes a task only if no task was published under this idempotency key before.
-- KEYS[1] idempotency key, KEYS[2] queue list; ARGV[1] task id, ARGV[2] envelope.
-- Returns the id of the task that owns the key (the new one, or the earlier one).
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('LPUSH', KEYS[2], ARGV[2])
return ARGV[1]
