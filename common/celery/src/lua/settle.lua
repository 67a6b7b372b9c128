-- Ends a delivery that this worker still holds (its tag is still in `unacked`), and optionally
-- puts the message somewhere else in the same step. Nothing happens when the lease was lost
-- (a restore already gave the message back), so a message is never in two places.
-- KEYS[1] unacked, KEYS[2] unacked_index, KEYS[3] destination (list or zset; unused for 'ack')
-- ARGV[1] tag, ARGV[2] action: 'ack' | 'rpush' | 'lpush' | 'zadd' | 'zadd_in', ARGV[3] value,
-- ARGV[4] the zadd score ('zadd'), or seconds from now by the server's clock ('zadd_in')
-- Returns 1 when the delivery was settled, 0 when it was no longer held, -1 (and nothing
-- done) when the destination holds another type than the action needs.
local kinds = {rpush = 'list', lpush = 'list', zadd = 'zset', zadd_in = 'zset'}
local kind = kinds[ARGV[2]]
if kind and not writable(KEYS[3], kind) then return -1 end
if not ack(KEYS[1], KEYS[2], ARGV[1]) then return 0 end
local action = ARGV[2]
if action == 'rpush' then
  redis.call('RPUSH', KEYS[3], ARGV[3])
elseif action == 'lpush' then
  redis.call('LPUSH', KEYS[3], ARGV[3])
elseif action == 'zadd' then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
elseif action == 'zadd_in' then
  redis.call('ZADD', KEYS[3], server_now() + tonumber(ARGV[4]), ARGV[3])
end
return 1
