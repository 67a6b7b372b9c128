-- Pushes one remote-control reply onto a client's reply list and gives the list a short life,
-- so that replies nobody collects (a client gone, a `limit` reached) cannot pile up.
-- KEYS[1] reply list `<oid>.reply.celery.pidbox`. ARGV[1] reply envelope, ARGV[2] life in ms.
-- Returns 1 when pushed, 0 when the key holds another type.
if not writable(KEYS[1], 'list') then return 0 end
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
