-- prelude.lua: the helpers every script of the Celery layer shares. `scripts.rs` prepends this
-- file to each script, so each rule below has one home:
--   server_now()                   the server's clock (every time decision uses it)
--   lease_score(now)               a lease's score in `unacked_index`: whole seconds, rounded up
--   ack(unacked, index, tag)       kombu's acknowledgement: true when the tag was still held
--   store_result(key, json, ttl)   Celery's SET/SETEX + PUBLISH (callers first ask
--   stored_success(key)/is_success  whether a SUCCESS is there: it is never replaced)
--   writable(key, kind)            the key is absent or of that type ('list', 'string'...):
--                                  scripts check every key they write before the first write,
--                                  so an error inside Redis never leaves a step half done
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- A lease's score in `unacked_index` (kombu reads it as `time()` when it restores): the
-- clock rounded up to a whole second. Redis keeps a small sorted set (up to 128 members) as a
-- listpack, and finds where a new member goes by reading every score before it: a whole number
-- is read as an integer, a fraction is parsed with strtod each time (fractional scores made a
-- claim's batched `ZADD` ~3.8x dearer at 60-90 members held; a larger set is a skiplist, where
-- neither matters). Rounding up makes a lease last at most a second longer, never shorter.
local function lease_score(now)
  return math.ceil(now)
end

local function writable(key, kind)
  local t = redis.call('TYPE', key)
  t = t.ok or t
  return t == 'none' or t == kind
end

local function ack(unacked, index, tag)
  redis.call('ZREM', index, tag)
  return redis.call('HDEL', unacked, tag) == 1
end

-- Whether a result's JSON (or false: none stored) is a SUCCESS.
local function is_success(current)
  return current and string.find(current, '^{%s*"status"%s*:%s*"SUCCESS"') ~= nil
end

local function stored_success(key)
  return is_success(redis.call('GET', key))
end

local function store_result(key, json, ttl)
  if tonumber(ttl) > 0 then
    redis.call('SETEX', key, ttl, json)
  else
    redis.call('SET', key, json)
  end
  redis.call('PUBLISH', key, json)
end

