-- Lists the scheduled messages whose time has come, by the server's clock (read only: Rust
-- computes where each goes, then `move_due.lua` moves them).
-- KEYS[1] schedule zset; ARGV[1] most to list; ARGV[2] 'all' to list them whatever their time
-- (an operator returning every parked message to its queue).
-- Returns {seconds until the next one not listed is due, or -1; raw1, raw2, ...}.
local now = server_now()
local upto = now
if ARGV[2] == 'all' then upto = '+inf' end
local due = redis.call('ZRANGE', KEYS[1], '-inf', upto, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
local wait = -1
local nxt = redis.call('ZRANGE', KEYS[1], #due, #due, 'WITHSCORES')
if nxt[2] then wait = math.max(0, tonumber(nxt[2]) - now) end
local out = {tostring(wait)}
for _, raw in ipairs(due) do table.insert(out, raw) end
return out
