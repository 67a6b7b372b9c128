-- Pushes one remote-control reply onto the reply list a client bound for its routing key, and
-- gives the list a short life, so that replies nobody collects (a client gone, a `limit`
-- reached) cannot pile up. Only the list kombu's client binds (`<oid>.reply.celery.pidbox`
-- under routing key `<oid>`) is served: one reply, one push, however many bindings exist.
-- KEYS[1] binding set `_kombu.binding.reply.celery.pidbox`, KEYS[2] reply list.
-- ARGV[1] reply envelope, ARGV[2] life in ms, ARGV[3] the binding member that must exist.
-- Returns 1 when pushed, 0 when nobody is bound or a key holds another type.
if not (writable(KEYS[2], 'list')) then return 0 end
local t = redis.call('TYPE', KEYS[1])
if (t.ok or t) ~= 'set' then return 0 end
if redis.call('SISMEMBER', KEYS[1], ARGV[3]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
