-- Lists deliveries whose lease is older than the visibility timeout, by the server's clock.
-- KEYS[1] unacked_index, KEYS[2] unacked; ARGV[1] visibility timeout (s), ARGV[2] most to list.
-- Returns {cutoff, tag1, value1, tag2, value2, ...}.
local cutoff = server_now() - tonumber(ARGV[1])
local tags = redis.call('ZRANGE', KEYS[1], '-inf', cutoff, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {tostring(cutoff)}
for _, tag in ipairs(tags) do
  local v = redis.call('HGET', KEYS[2], tag)
  if v then
    table.insert(out, tag)
    table.insert(out, v)
  else
    redis.call('ZREM', KEYS[1], tag)
  end
end
return out
