-- Stores REVOKED for a task that has not started anywhere, as Celery's `revoke` handler does:
-- only when the stored state is missing, PENDING, RECEIVED, RETRY or REJECTED (a running or
-- finished task keeps its state). An unreadable stored value is left alone.
-- KEYS[1] celery-task-meta-<id>. ARGV[1] result JSON, ARGV[2] ttl in seconds (0: none).
-- Returns 1 when stored.
if not writable(KEYS[1], 'string') then return 0 end
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if not ok or type(meta) ~= 'table' then return 0 end
  local s = meta['status']
  if s ~= 'PENDING' and s ~= 'RECEIVED' and s ~= 'RETRY' and s ~= 'REJECTED' then return 0 end
end
store_result(KEYS[1], ARGV[1], ARGV[2])
return 1
