-- Stores REVOKED for tasks that have not started anywhere, as Celery's `revoke` handler does:
-- for each key, only when the stored state is missing, PENDING, RECEIVED, RETRY or REJECTED (a
-- running or finished task keeps its state); an unreadable value or a key of another type is
-- left alone. Each key is independent: its check and write happen together.
-- KEYS[i] celery-task-meta-<id>. ARGV[1] ttl in seconds (0: none), ARGV[i + 1] the result JSON
-- for KEYS[i]. Returns how many were stored.
local stored = 0
for i, key in ipairs(KEYS) do
  local write = writable(key, 'string')
  if write then
    local current = redis.call('GET', key)
    if current then
      local ok, meta = pcall(cjson.decode, current)
      local s = ok and type(meta) == 'table' and meta['status']
      write = s == 'PENDING' or s == 'RECEIVED' or s == 'RETRY' or s == 'REJECTED'
    end
  end
  if write then
    store_result(key, ARGV[i + 1], ARGV[1])
    stored = stored + 1
  end
end
return stored
