-- Caps the dead-letter list at its newest ARGV[1] entries, counting the ones dropped.
-- KEYS[1] dead-letter list, KEYS[2] counter of entries dropped so far.
-- Returns how many were dropped now.
if not (writable(KEYS[1], 'list') and writable(KEYS[2], 'string')) then return 0 end
local len = redis.call('LLEN', KEYS[1])
local keep = tonumber(ARGV[1])
if len <= keep then return 0 end
redis.call('LTRIM', KEYS[1], 0, keep - 1)
redis.call('INCRBY', KEYS[2], len - keep)
return len - keep
