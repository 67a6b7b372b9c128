-- Ends a task in one step: acknowledges its delivery, publishes the messages it sends on
-- (children, callbacks, the next chain step) and stores its result, so none of the three can
-- happen without the others. When a SUCCESS is already stored (a redelivered task whose first
-- run finished) nothing is published or written: that run did it; the delivery is still acked.
-- KEYS[1] unacked, KEYS[2] unacked_index, KEYS[3] celery-task-meta-<id>;
-- KEYS[3+i] the queue list of the i-th message to publish.
-- ARGV[1] delivery tag to acknowledge ('' for none), ARGV[2] result JSON ('' to store none),
-- ARGV[3] result TTL in seconds (0: none); ARGV[3+i] the i-th message's envelope (LPUSHed as a
-- producer does).
-- Returns 1 when the result was written (or none was asked for), 0 when a SUCCESS was there;
-- before any write, -1 when the result key holds another type than a string, -(1 + i) when the
-- i-th list to publish to holds another type than a list (then nothing is done at all).
if ARGV[2] ~= '' and not writable(KEYS[3], 'string') then return -1 end
for i = 4, #KEYS do
  if not writable(KEYS[i], 'list') then return -(i - 2) end
end
if ARGV[1] ~= '' then ack(KEYS[1], KEYS[2], ARGV[1]) end
if ARGV[2] ~= '' and stored_success(KEYS[3]) then return 0 end
for i = 4, #KEYS do
  redis.call('LPUSH', KEYS[i], ARGV[i])
end
if ARGV[2] ~= '' then store_result(KEYS[3], ARGV[2], ARGV[3]) end
return 1
