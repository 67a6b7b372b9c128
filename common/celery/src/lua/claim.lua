-- Takes up to ARGV[1] messages and records each as unacknowledged, in one step (kombu's layout),
-- so a message is at every instant either in a list or in `unacked`: never only in a worker's memory.
-- KEYS[1] unacked hash, KEYS[2] unacked_index zset, KEYS[3] dead-letter list,
-- KEYS[4..] lists to take from, in order (the processing lists first, then the priority lists).
-- ARGV[1] most to take; ARGV[2] largest entry held (bytes); ARGV[3] largest entry decoded here
-- when its tag cannot be found; ARGV[4] bytes of an entry a dead letter keeps when it is larger;
-- ARGV[5] prefix of the delivery counters; ARGV[6] most deliveries; ARGV[7] a counter's lifetime
-- (seconds); ARGV[8] the suffix of a held delivery's field (`keys::LEASE_SUFFIX`); ARGV[9..] the
-- queue of each list (KEYS[n] belongs to queue ARGV[n + 5]).
-- A held message is recorded under its delivery tag followed by the suffix: this project's
-- workers renew its lease, and restores tell their entries from kombu's by it.
-- Each held message is recorded as kombu's [envelope, exchange, routing_key] with exchange "" and
-- the queue it was taken from as routing key, so a restore by any worker (kombu's too: an empty
-- exchange routes by routing key) puts it back where it was, whatever exchange and routing key its
-- producer used (a message published to a named exchange carries that exchange's routing key).
-- Returns {now, raw1, about1, raw2, about2, ...}: `now` is the server's clock; `about` is
-- `<n> <deliveries> <tag>` for a message now held, `<n> ! <reason>` for an entry that went to the
-- dead-letter list instead (then `raw` is the dead-letter entry as stored), where `<n>` says
-- which list it came from (KEYS[3 + n]) and `deliveries` counts this delivery of a held message
-- (see below). Two reply elements a message, not five: a client pays for each element (redis-rs
-- ~200 ns, whatever its size), and the tag is a new string here anyway.
-- Junk costs bounded work: an entry larger than ARGV[2] is never held nor decoded, and one
-- without a findable tag is decoded only up to ARGV[3] bytes; a dead letter of either keeps its
-- first ARGV[4] bytes and its size (`raw_bytes`), and its task and id when they can be found.
-- Deliveries: a message a restore gave back carries kombu's `"redelivered": true` (set by kombu's
-- restore and ours); only those are counted, in `<ARGV[5]><sha1 of its tag>` (a counter per
-- message, named here because only this script reads the tag; it lives ARGV[7] seconds after
-- its last count). `deliveries` is 1 for a message never given back, else 1 + its count; past
-- ARGV[6] the counter is deleted (a requeued dead letter starts again) and the worker dead-letters it.
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

-- Whether any `"redelivered"` at or after `from` is `true` (an earlier `false` hides nothing).
local function redelivered(raw, from)
  while true do
    local _, stop = string.find(raw, '"redelivered"', from, true)
    if not stop then return false end
    if string.find(raw, '^%s*:%s*true', stop + 1) then return true end
    from = stop + 1
  end
end

-- `headers.task` and `headers.id` as found in `text` (a bounded piece of an entry), or nil.
local function ids(text)
  local h = string.find(text, '"headers"', 1, true)
  if not h then return nil, nil end
  local task, id = field(text, 'task', h), field(text, 'id', h)
  if task == '' then task = nil end
  if id == '' then id = nil end
  return task, id
end

if not (writable(KEYS[1], 'hash') and writable(KEYS[2], 'zset') and writable(KEYS[3], 'list')) then
  return redis.error_reply('WRONGTYPE unacked, unacked_index or the dead-letter list holds another type: nothing taken')
end
local now = server_now()
-- The lease's score in `unacked_index`: the server's clock in whole seconds, rounded up (see
-- `lease_score` in prelude.lua).
local score = lease_score(now)
local out = {tostring(now)}
local want = tonumber(ARGV[1]) or 1
local max_held, max_decoded, keep = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local counters, max_deliveries, counter_life, lease = ARGV[5], tonumber(ARGV[6]), ARGV[7], ARGV[8]

-- Moves an entry that is not held to the dead-letter list: whole when it is at most
-- `max_decoded` bytes, else its first `keep` bytes with its size (said in the reason too).
-- Returns the entry stored and the reason.
local function dead_letter(raw, reason, queue, task, id)
  local entry = {reason = reason, queue = queue, task = task, task_id = id, raw = raw, at = now}
  if #raw > max_decoded then
    entry.reason = reason .. ' (raw keeps its first ' .. keep .. ' of ' .. #raw .. ' bytes)'
    entry.raw = string.sub(raw, 1, keep)
    entry.raw_bytes = #raw
    if not id then entry.task, entry.task_id = ids(string.sub(raw, -keep)) end
    if not entry.task_id then entry.task, entry.task_id = ids(entry.raw) end
  end
  local json = cjson.encode(entry)
  redis.call('LPUSH', KEYS[3], json)
  return json, entry.reason
end

-- Held messages are recorded with one HSET and one ZADD per (at most) 100.
local entries, scores, seen = {}, {}, {}
local function record()
  if #entries > 0 then
    redis.call('HSET', KEYS[1], unpack(entries))
    redis.call('ZADD', KEYS[2], unpack(scores))
    entries, scores = {}, {}
  end
end
-- Where the first `"delivery_info"` in `raw` starts, or nil. Found by its tail `y_info"`: a
-- plain find stops at each occurrence of the first character of what it looks for, and an
-- envelope has ~100 quotes before its properties (~0.5 us a message against ~0.15).
local function delivery_info(raw)
  local from = 1
  while true do
    local at = string.find(raw, 'y_info"', from, true)
    if not at then return nil end
    if at > 8 and string.find(raw, '^"delivery_info"', at - 8) then return at - 8 end
    from = at + 1
  end
end

-- Holds `raw`, taken from the `from`-th list passed (KEYS[3 + from], a list of `queue`; `from`
-- as text), or dead-letters it; adds it to `out` either way.
local function take(raw, queue, from)
  local tag, reason, env, info = nil, nil, nil, 1
  if #raw > max_held then
    reason = 'message is larger than ' .. max_held .. ' bytes'
  else
    -- Read the delivery tag without decoding the whole envelope (this runs once per task
    -- inside Redis): it sits in `properties`, at the end of kombu's and our envelopes. Fall
    -- back to a full decode, of a small entry only, when the text is unusual.
    info = delivery_info(raw) or 1
    tag = field(raw, 'delivery_tag', info) or field(raw, 'delivery_tag', 1)
    if tag == '' then tag = nil end
    -- Not even shaped like one JSON object (kombu's restore, which decodes what `unacked`
    -- holds, would choke on it): decoded below, and dead-lettered when that fails. A full
    -- decode of every message would cost ~5 us each.
    if tag and not (string.byte(raw, 1) == 123 and string.byte(raw, -1) == 125) then tag = nil end
    local ok = true
    if not tag and #raw <= max_decoded then
      ok, env = pcall(cjson.decode, raw)
      if ok and type(env) == 'table' and type(env.properties) == 'table' then
        tag = env.properties.delivery_tag
      end
    end
    if type(tag) ~= 'string' or tag == '' then
      reason = 'envelope has no properties.delivery_tag'
      if #raw > max_decoded then
        reason = reason .. ' readable without decoding it, and it is too large to decode here'
      elseif not ok or type(env) ~= 'table' then
        reason = 'envelope is not a JSON object'
      end
    end
  end
  if reason then
    local task, id
    if type(env) == 'table' and type(env.headers) == 'table' then
      task, id = env.headers.task, env.headers.id
      if type(task) ~= 'string' or task == '' then task = nil end
      if type(id) ~= 'string' or id == '' then id = nil end
    end
    local json, why = dead_letter(raw, reason, queue, task, id)
    table.insert(out, json)
    table.insert(out, from .. ' ! ' .. why)
  else
    local deliveries = 1
    if redelivered(raw, info) then
      local counter = counters .. redis.sha1hex(tag)
      local n = redis.pcall('INCR', counter)
      if type(n) ~= 'number' then
        -- A counter that is not one of ours is left alone, and the message counts as over
        -- its limit rather than uncounted.
        deliveries = max_deliveries + 1
      else
        -- (Bounded, so that it is written as an integer: a counter set to 1e15 by another
        -- program reads as just past the limit.)
        deliveries = math.min(n + 1, max_deliveries + 1)
        if deliveries > max_deliveries then
          redis.call('DEL', counter)
        else
          redis.call('EXPIRE', counter, counter_life)
        end
      end
    end
    -- A tag already held (a producer reused another message's tag) gets a suffix: recording it
    -- under the same field would overwrite the other message's entry and lose it.
    if seen[tag .. lease] or redis.call('HEXISTS', KEYS[1], tag .. lease) == 1 then
      tag = tag .. ':' .. tostring(now) .. ':' .. tostring(#out)
    end
    tag = tag .. lease
    seen[tag] = true
    table.insert(entries, tag)
    table.insert(entries, '[' .. raw .. ', "", ' .. cjson.encode(queue) .. ']')
    table.insert(scores, score)
    table.insert(scores, tag)
    if #scores >= 200 then record() end
    table.insert(out, raw)
    -- (Numbers are written by sprintf: the usual count is a constant.)
    table.insert(out, from .. (deliveries == 1 and ' 1 ' or ' ' .. deliveries .. ' ') .. tag)
  end
end

-- Each list in turn, as many as still wanted in one RPOP each (a list that gives fewer is
-- empty: the next one is tried).
local list = 4
while want > 0 and list <= #KEYS do
  local taken = redis.pcall('RPOP', KEYS[list], want)
  if type(taken) == 'table' and taken.err then
    -- Not a list (another program's key): nothing to take from it.
    taken = false
  end
  if taken then
    local queue, from = ARGV[list + 5], tostring(list - 3)
    for _, raw in ipairs(taken) do
      take(raw, queue, from)
    end
    want = want - #taken
  end
  if not taken or want > 0 then list = list + 1 end
end
record()
return out
