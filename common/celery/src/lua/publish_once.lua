-- Publishes a task only if no task was published under this idempotency key before, and only
-- while the queue is not deeper than the limit: nothing is written otherwise.
-- KEYS[1] idempotency key, KEYS[2] the list to push to, KEYS[3..] the queue's priority lists.
-- ARGV[1] task id, ARGV[2] envelope, ARGV[3] most messages waiting (0: no limit),
-- ARGV[4] seconds the idempotency key lives (its retention).
-- Returns {'existing', id} | {'full', depth} | {'created', id} | {'unroutable', type} when the
-- list or the idempotency key holds another type (nothing written).
if not writable(KEYS[2], 'list') then return {'unroutable', 'queue'} end
if not writable(KEYS[1], 'string') then return {'unroutable', 'key'} end
local existing = redis.call('GET', KEYS[1])
if existing then return {'existing', existing} end
local limit = tonumber(ARGV[3])
if limit > 0 then
  local depth = 0
  for i = 3, #KEYS do depth = depth + redis.call('LLEN', KEYS[i]) end
  if depth >= limit then return {'full', tostring(depth)} end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
redis.call('LPUSH', KEYS[2], ARGV[2])
return {'created', ARGV[1]}
