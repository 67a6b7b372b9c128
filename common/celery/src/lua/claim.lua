-- Takes up to ARGV[1] messages and records each as unacknowledged, in one step (kombu's layout),
-- so a message is at every instant either in a list or in `unacked`: never only in a worker's memory.
-- KEYS[1] unacked hash, KEYS[2] unacked_index zset, KEYS[3] dead-letter list,
-- KEYS[4..] lists to take from, in order (the processing lists first, then the priority lists).
-- ARGV[1] most to take; ARGV[2] the suffix of a held delivery's field (`keys::LEASE_SUFFIX`);
-- ARGV[3..] the queue of each list (KEYS[n] belongs to queue ARGV[n - 1]).
-- A held message is recorded under its delivery tag followed by the suffix: this project's
-- workers renew its lease, and restores tell their entries from kombu's by it.
-- Each held message is recorded as kombu's [envelope, exchange, routing_key] with exchange "" and
-- the queue it was taken from as routing key, so a restore by any worker (kombu's too: an empty
-- exchange routes by routing key) puts it back where it was, whatever exchange and routing key its
-- producer used (a message published to a named exchange carries that exchange's routing key).
-- Returns {now, raw1, tag1, reason1, queue1, raw2, ...}: `now` is the server's clock; `reason` is
-- '' for a message now held, or why the entry went to the dead-letter list (no delivery tag);
-- `queue` is the queue of the list it came from.
-- Refuses (an error, nothing taken) when `unacked`, `unacked_index` or the dead-letter list
-- holds another type; a list of another type is skipped, so no popped message is ever lost.

-- The string value of the first `"name": "..."` in `raw` at or after byte `from`, or nil. A plain
-- find (memchr and memcmp) then an anchored match: an unanchored pattern retries at every byte
-- of the ~1 KB envelope and made this script cost ~25 us per message inside Redis.
local function field(raw, name, from)
  local _, stop = string.find(raw, '"' .. name .. '"', from, true)
  if not stop then return nil end
  return string.match(raw, '^%s*:%s*"([^"\\]*)"', stop + 1)
end

if not (writable(KEYS[1], 'hash') and writable(KEYS[2], 'zset') and writable(KEYS[3], 'list')) then
  return redis.error_reply('WRONGTYPE unacked, unacked_index or the dead-letter list holds another type: nothing taken')
end
local now = server_now()
local out = {tostring(now)}
local want = tonumber(ARGV[1]) or 1
-- Held messages are recorded with one HSET and one ZADD per (at most) 100.
local entries, scores, seen = {}, {}, {}
local function record()
  if #entries > 0 then
    redis.call('HSET', KEYS[1], unpack(entries))
    redis.call('ZADD', KEYS[2], unpack(scores))
    entries, scores = {}, {}
  end
end
local list = 4
while want > 0 and list <= #KEYS do
  local raw = redis.pcall('RPOP', KEYS[list])
  if type(raw) == 'table' and raw.err then
    -- Not a list (another program's key): nothing to take from it.
    list = list + 1
  elseif not raw then
    list = list + 1
  else
    want = want - 1
    local queue = ARGV[list - 1]
    -- Read the delivery tag without decoding the whole envelope (this runs once per task
    -- inside Redis): it sits in `properties`, at the end of kombu's and our envelopes. Fall back
    -- to a full decode when the text is unusual.
    local info = string.find(raw, '"delivery_info"', 1, true) or 1
    local tag = field(raw, 'delivery_tag', info) or field(raw, 'delivery_tag', 1)
    if tag == '' then tag = nil end
    -- Not even shaped like one JSON object (kombu's restore, which decodes what `unacked` holds,
    -- would choke on it): decoded in full below, and dead-lettered when that fails. A full
    -- decode of every message would cost ~5 us each.
    if tag and not (string.byte(raw, 1) == 123 and string.byte(raw, -1) == 125) then tag = nil end
    local ok, env = true, nil
    if not tag then
      ok, env = pcall(cjson.decode, raw)
      if ok and type(env) == 'table' and type(env.properties) == 'table' then
        tag = env.properties.delivery_tag
      end
    end
    -- A tag already held (a producer reused another message's tag) gets a mark: recording it
    -- under the same field would overwrite the other message's entry and lose it.
    if type(tag) == 'string' and tag ~= '' then
      if seen[tag .. ARGV[2]] or redis.call('HEXISTS', KEYS[1], tag .. ARGV[2]) == 1 then
        tag = tag .. ':' .. tostring(now) .. ':' .. tostring(#out)
      end
      tag = tag .. ARGV[2]
    end
    if type(tag) ~= 'string' or tag == '' then
      local reason = 'envelope has no properties.delivery_tag'
      if not ok or type(env) ~= 'table' then reason = 'envelope is not a JSON object' end
      redis.call('LPUSH', KEYS[3], cjson.encode({reason = reason, queue = queue, raw = raw, at = now}))
      table.insert(out, raw)
      table.insert(out, '')
      table.insert(out, reason)
      table.insert(out, queue)
    else
      seen[tag] = true
      table.insert(entries, tag)
      table.insert(entries, '[' .. raw .. ', "", ' .. cjson.encode(queue) .. ']')
      table.insert(scores, now)
      table.insert(scores, tag)
      if #scores >= 200 then record() end
      table.insert(out, raw)
      table.insert(out, tag)
      table.insert(out, '')
      table.insert(out, queue)
    end
  end
end
record()
return out
