-- Moves messages whose eta has come from the schedule back to the consuming end of their list.
-- KEYS[1] schedule zset, KEYS[2] dead-letter list; ARGV[1] most to move; ARGV[2] kombu's separator.
-- Returns {moved, seconds until the next one is due or -1}. Uses the server's clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local due = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
for _, raw in ipairs(due) do
  redis.call('ZREM', KEYS[1], raw)
  local ok, env = pcall(cjson.decode, raw)
  local rk = ok and type(env) == 'table' and type(env.properties) == 'table'
    and type(env.properties.delivery_info) == 'table' and env.properties.delivery_info.routing_key
  if type(rk) == 'string' and rk ~= '' then
    local p = tonumber(env.properties.priority) or 0
    if p < 0 then p = 0 elseif p > 9 then p = 9 end
    p = p - p % 3
    local list = rk
    if p > 0 then list = rk .. ARGV[2] .. p end
    redis.call('RPUSH', list, raw)
  else
    redis.call('LPUSH', KEYS[2], cjson.encode({reason = 'scheduled entry has no routing key', raw = raw, at = now}))
  end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if nxt[2] then wait = tonumber(nxt[2]) - now end
return {#due, tostring(wait)}
