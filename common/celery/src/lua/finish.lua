-- Ends a task in one step: acknowledges its delivery, publishes the messages it sends on
-- (children, callbacks, the next chain step) and stores its result, so none of the three can
-- happen without the others. When a SUCCESS is already stored (a redelivered task whose first
-- run finished) nothing of that is published or written: that run did it; the delivery is
-- still acked.
-- A chord header member that completed the join (chord_join.lua recorded it in `<gid>.c`)
-- also publishes the chord's body (or its errbacks) and stores the body's FAILURE, only while
-- `.c` still names it: then `.c` becomes 'done' (Celery 5.7's marker) and the join, counter,
-- size and dedup keys are deleted, as Celery does after the body is sent.
-- KEYS[1] unacked, KEYS[2] unacked_index, KEYS[3] celery-task-meta-<id>,
-- with a chord member only: KEYS[4] <gid>.c, KEYS[5] celery-task-meta-<body id>, KEYS[6..9]
-- <gid>.j .t .s .d; then the queue list of the i-th message to publish (KEYS[9+i] with a chord
-- member, KEYS[3+i] without: a plain task passes no placeholders),
-- the chord's messages first.
-- ARGV[1] delivery tag to acknowledge ('' for none), ARGV[2] result JSON ('' to store none),
-- ARGV[3] result TTL in seconds (0: none), ARGV[4] the chord member as `.c` names it ('' for
-- none), ARGV[5] the body's result JSON ('' for none), ARGV[6] how many of the messages are
-- the chord's; ARGV[6+i] the i-th message's envelope (LPUSHed as a producer does).
-- Returns 1 when the result was written (or none was asked for), 0 when a SUCCESS was there;
-- before any write, -1 when the result key holds another type than a string, -(1 + i) when the
-- i-th list to publish to holds another type than a list (then nothing is done at all); -1 too
-- when the chord's own messages made the result key a list (the ack and the chord's part done,
-- nothing else).
-- The stored result (false: none), or nil when the key holds another type (GET fails on it).
local function stored_result()
  local value = redis.pcall('GET', KEYS[3])
  if type(value) == 'table' then return nil end
  return value
end
local current = false
if ARGV[2] ~= '' then
  current = stored_result()
  if current == nil then return -1 end
end
-- The first queue list's index in KEYS: the i-th message's list is KEYS[lists + i - 1].
local lists = ARGV[4] ~= '' and 10 or 4
for i = lists, #KEYS do
  if not writable(KEYS[i], 'list') then return -(i - lists + 2) end
end
if ARGV[1] ~= '' then ack(KEYS[1], KEYS[2], ARGV[1]) end
local chord_sends = tonumber(ARGV[6])
-- (`.c` of another type, put there since the join, names nobody: no error half-way.)
if ARGV[4] ~= '' and writable(KEYS[4], 'string') and redis.call('GET', KEYS[4]) == ARGV[4] then
  for i = 1, chord_sends do
    redis.call('LPUSH', KEYS[lists + i - 1], ARGV[6 + i])
  end
  if ARGV[5] ~= '' and writable(KEYS[5], 'string') then store_result(KEYS[5], ARGV[5], ARGV[3]) end
  if tonumber(ARGV[3]) > 0 then
    redis.call('SET', KEYS[4], 'done', 'EX', ARGV[3])
  else
    redis.call('SET', KEYS[4], 'done')
  end
  redis.call('DEL', KEYS[6], KEYS[7], KEYS[8], KEYS[9])
  -- What the chord wrote may be this task's result key (a body with its own id, a queue of that
  -- name under an odd prefix): read it again; a list now ends here, nothing more written.
  if ARGV[2] ~= '' then
    current = stored_result()
    if current == nil then return -1 end
  end
end
if is_success(current) then return 0 end
for i = chord_sends + 1, #KEYS - lists + 1 do
  redis.call('LPUSH', KEYS[lists + i - 1], ARGV[6 + i])
end
if ARGV[2] ~= '' then store_result(KEYS[3], ARGV[2], ARGV[3]) end
return 1
