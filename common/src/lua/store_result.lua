-- Writes a task's result the way Celery's Redis backend does (SETEX + PUBLISH of the same JSON),
-- but never replaces a SUCCESS. KEYS[1] celery-task-meta-<id>; ARGV[1] JSON; ARGV[2] TTL (0: none).
-- Returns 1 when written, 0 when a SUCCESS was already there.
local current = redis.call('GET', KEYS[1])
if current and string.find(current, '^{%s*"status"%s*:%s*"SUCCESS"') then return 0 end
if tonumber(ARGV[2]) > 0 then
  redis.call('SETEX', KEYS[1], ARGV[2], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
