-- A chord header member's part of Celery's Redis join (`on_chord_part_return`), in the keys
-- Celery 5.4 and 5.7 workers use, so a header may be split across Python and Rust workers:
-- the member's `[1, tid, state, result]` is added to the join key (a ZSET scored by its
-- group_index when ordered, else a LIST) once per member (`<gid>.d` holds `tid:index`, as in
-- Celery 5.7), and the join, counter and size keys get the chord's expiry. When the count
-- reaches `.s` + `.t`, the member that got there is recorded in `<gid>.c` (Celery 5.7's
-- dispatch claim: a Python worker's SET NX then fails), so that only it publishes the body,
-- in the step that also stores its result and acks it (finish.lua), which marks `.c` 'done'.
-- A member that runs again finds itself in `.c` and publishes then; any other finds the
-- claim taken (or 'done') and publishes nothing.
-- KEYS[1] <gid>.j, KEYS[2] <gid>.t, KEYS[3] <gid>.s, KEYS[4] <gid>.d, KEYS[5] <gid>.c,
-- KEYS[6] celery-taskset-meta-<gid> (a saved GroupResult: a header of groups, not joined here).
-- ARGV[1] tid, ARGV[2] the encoded entry, ARGV[3] '1' ordered (ZSET) or '0' (LIST),
-- ARGV[4] score (group_index, '+inf' without one), ARGV[5] expiry in seconds (0: none),
-- ARGV[6] most bytes of entries to return.
-- Returns {'done'} when the chord was finished before, {'other', n, total} when it is not
-- this member's to publish (waiting for n < total, or claimed by another),
-- {'broken'} when the join keys hold other types, `.s`/`.t` no integer or a total below 1,
-- or another member made the same entry (the claim is taken),
-- {'nested'} when a GroupResult was saved for the group (the claim is taken),
-- {'large', bytes} when the entries are over the limit (the claim is taken), or
-- {'complete', entry...} in header order when this member publishes the body.
local jkey, tkey, skey, dkey, ckey, gkey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local tid, entry, ordered, score = ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4]
local expires, max_bytes = tonumber(ARGV[5]), tonumber(ARGV[6])
local member = tid .. ':' .. score
-- A claim of another type cannot be taken (Celery 5.7's SET NX fails on it too).
if not writable(ckey, 'string') then return {'other', 0, 0} end
local claim = redis.call('GET', ckey)
if claim == 'done' then return {'done'} end
local function take_claim()
  if expires > 0 then
    redis.call('SET', ckey, member, 'EX', expires)
  else
    redis.call('SET', ckey, member)
  end
end
-- Not joinable (junk keys, or members joined with another result_chord_ordered): the first
-- member to get here claims the chord and fails its body, as Celery's 'Join error'.
local function broken()
  if claim and claim ~= member then return {'other', 0, 0} end
  take_claim()
  return {'broken'}
end
local kind = ordered and 'zset' or 'list'
if not (writable(jkey, kind) and writable(dkey, 'set')
    and writable(tkey, 'string') and writable(skey, 'string')) then
  return broken()
end
-- `.s` and `.t` hold integers (Celery's int() of anything else is a 'Join error' too); a
-- size that no count of members reaches would leave the body waiting for good.
local function integer(key)
  local v = redis.call('GET', key)
  if not v then return nil, true end
  if #v > 15 or not string.match(v, '^%-?%d+$') then return nil, false end
  return tonumber(v), true
end
local size, size_ok = integer(skey)
local diff, diff_ok = integer(tkey)
if not (size_ok and diff_ok) then return broken() end
local total = (size or 0) + (diff or 0)
if size and total < 1 then return broken() end
if redis.call('SISMEMBER', dkey, member) == 0 then
  if ordered then
    -- Another member (another index) made the same entry, the same task id and result: the
    -- count would never reach the size. The same index is this member joined by a worker that
    -- keeps no `.d` (Celery 5.4): counted once, as before.
    if redis.call('ZADD', jkey, 'NX', score, entry) == 0 then
      local function num(v) if v == '+inf' or v == 'inf' then return math.huge end return tonumber(v) end
      if num(redis.call('ZSCORE', jkey, entry)) ~= num(score) then return broken() end
    end
  else
    redis.call('RPUSH', jkey, entry)
  end
  redis.call('SADD', dkey, member)
end
local ready
if ordered then ready = redis.call('ZCARD', jkey) else ready = redis.call('LLEN', jkey) end
if expires > 0 then
  for _, key in ipairs({jkey, tkey, skey, dkey}) do redis.call('EXPIRE', key, expires) end
end
if claim ~= member then
  if claim or not size or ready ~= total then return {'other', ready, total} end
  take_claim()
end
if redis.call('EXISTS', gkey) == 1 then return {'nested'} end
local entries
if ordered then entries = redis.call('ZRANGE', jkey, 0, -1) else entries = redis.call('LRANGE', jkey, 0, -1) end
local bytes = 0
for _, e in ipairs(entries) do bytes = bytes + #e end
if bytes > max_bytes then return {'large', bytes} end
table.insert(entries, 1, 'complete')
return entries
