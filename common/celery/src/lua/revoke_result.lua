-- Stores REVOKED for tasks that have not started anywhere, as Celery's `revoke` handler does:
-- for each key, only when nothing is stored (or an empty value) or the stored state is PENDING,
-- RECEIVED, RETRY or REJECTED (a running or finished task keeps its state). The state is read
-- from the value's first 128 bytes (Celery's result JSON begins with it), never by decoding the
-- whole value: a stored result may be of any size. A value that does not begin so, or a key of
-- another type, is left alone. Each key is independent: its check and write happen together.
-- KEYS[i] celery-task-meta-<id>. ARGV[1] ttl in seconds (0: none), ARGV[i + 1] the result JSON
-- for KEYS[i]. Returns how many were stored.
local unstarted = {PENDING = true, RECEIVED = true, RETRY = true, REJECTED = true}
local stored = 0
for i, key in ipairs(KEYS) do
  local write = writable(key, 'string')
  if write then
    local head = redis.call('GETRANGE', key, 0, 127)
    if head ~= '' then
      local s = string.match(head, '^{%s*"status"%s*:%s*"(%u+)"')
      write = s ~= nil and unstarted[s] == true
    end
  end
  if write then
    store_result(key, ARGV[i + 1], ARGV[1])
    stored = stored + 1
  end
end
return stored
