-- Gives dead letters back to their queue, oldest first, each in one step.
-- KEYS[1] dead-letter list; ARGV[1] most to move (0: all); ARGV[2] default queue.
-- Returns how many moved. An entry whose raw message is not an envelope stays where it is.
local limit = tonumber(ARGV[1])
local moved = 0
local n = redis.call('LLEN', KEYS[1])
for _ = 1, n do
  if limit > 0 and moved >= limit then break end
  local entry = redis.call('RPOP', KEYS[1])
  if not entry then break end
  local ok, dead = pcall(cjson.decode, entry)
  if ok and type(dead) == 'table' and type(dead.raw) == 'string' then
    local queue = ARGV[2]
    if type(dead.queue) == 'string' and dead.queue ~= '' then queue = dead.queue end
    redis.call('LPUSH', queue, dead.raw)
    moved = moved + 1
  else
    redis.call('LPUSH', KEYS[1], entry)
  end
end
return moved
