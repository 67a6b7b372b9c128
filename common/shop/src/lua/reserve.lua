-- Reserves stock for an order, all items or none, once per order id.
-- KEYS[1] the order's reservation record, KEYS[2..] one stock key per distinct SKU.
-- ARGV[i] (i = 1..#KEYS-1) the quantity for KEYS[i+1]; ARGV[#KEYS-1+i] the SKU's name.
-- ARGV[2n+1] seconds the record lives (the retention).
-- Returns the record JSON: the stored one if the order was seen before, else the new one.
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
local n = #KEYS - 1
local ttl = ARGV[2 * n + 1]
for i = 1, n do
  local have = tonumber(redis.call('GET', KEYS[i + 1]) or '0') or 0
  local need = tonumber(ARGV[i])
  if have < need then
    local record = cjson.encode({status = 'rejected',
      reason = 'insufficient stock for ' .. ARGV[n + i] .. ': requested ' .. ARGV[i] .. ', available ' .. string.format('%d', have)})
    redis.call('SET', KEYS[1], record, 'EX', ttl)
    return record
  end
end
for i = 1, n do
  redis.call('DECRBY', KEYS[i + 1], ARGV[i])
end
-- What cjson.encode({status = 'confirmed'}) writes, without encoding a table per order.
local record = '{"status":"confirmed"}'
redis.call('SET', KEYS[1], record, 'EX', ttl)
return record
