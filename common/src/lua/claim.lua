-- Takes the next message and records it as unacknowledged, in one step (kombu's layout), so a
-- message is at every instant either in a list or in `unacked`: never only in a worker's memory.
-- KEYS[1] unacked hash, KEYS[2] unacked_index zset, KEYS[3] dead-letter list,
-- KEYS[4..] lists to take from, in order (the processing list first, then the priority lists).
-- ARGV[1] queue name, used as routing key when an envelope lacks one.
-- Returns {raw, tag, now} for a message; {raw, "", now, reason} when the entry was dead-lettered
-- because it has no delivery tag; false when every list is empty. `now` is the server's clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 4, #KEYS do
  local raw = redis.call('RPOP', KEYS[i])
  if raw then
    -- Read the three fields kombu needs without decoding the whole envelope (this runs once
    -- per task inside Redis); fall back to a full decode when the text is unusual.
    local tag = string.match(raw, '"delivery_tag"%s*:%s*"([^"\\]+)"')
    local exchange = string.match(raw, '"exchange"%s*:%s*"([^"\\]*)"')
    local rk = string.match(raw, '"routing_key"%s*:%s*"([^"\\]*)"')
    local ok, env = true, nil
    if not tag then
      ok, env = pcall(cjson.decode, raw)
      if ok and type(env) == 'table' and type(env.properties) == 'table' then
        tag = env.properties.delivery_tag
        local info = env.properties.delivery_info
        if type(info) == 'table' then
          exchange = info.exchange
          rk = info.routing_key
        end
      end
    end
    if type(tag) ~= 'string' or tag == '' then
      local reason = 'envelope has no properties.delivery_tag'
      if not ok or type(env) ~= 'table' then reason = 'envelope is not a JSON object' end
      redis.call('LPUSH', KEYS[3], cjson.encode({reason = reason, queue = ARGV[1], raw = raw, at = now}))
      return {raw, '', tostring(now), reason}
    end
    if type(exchange) ~= 'string' then exchange = '' end
    if type(rk) ~= 'string' or rk == '' then rk = ARGV[1] end
    redis.call('HSET', KEYS[1], tag, '[' .. raw .. ', ' .. cjson.encode(exchange) .. ', ' .. cjson.encode(rk) .. ']')
    redis.call('ZADD', KEYS[2], now, tag)
    return {raw, tag, tostring(now)}
  end
end
return false
