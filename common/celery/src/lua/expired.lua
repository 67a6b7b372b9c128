-- Lists deliveries whose holder is gone, by the server's clock. This project's workers record
-- what they hold under a tag ending with ARGV[3] and renew its lease while they run: theirs are
-- listed once older than ARGV[1] seconds. Anybody else's (a Python worker's: kombu never renews,
-- and holds an eta task or a long task for its whole wait) only once older than ARGV[2], the
-- fleet's kombu visibility timeout, so a live Python worker's task is never taken from it (an
-- entry whose value names its field as its delivery tag is a kombu worker's, whatever the field
-- ends with).
-- KEYS[1] unacked_index, KEYS[2] unacked; ARGV[4] most to list; ARGV[5] most index entries
-- looked at; ARGV[6] how many entries to pass over first (entries still held that an earlier
-- pass looked at: without it a window full of them would hide every orphan behind it).
-- Returns {own cutoff, foreign cutoff, where the next pass starts, tag1, value1, ...}.
-- Whether an entry's value gives its own field as the message's delivery tag: a kombu worker
-- records a message under its tag, which its producer chose and may have ended with the suffix;
-- this project's workers record it under the tag followed by the suffix. Read in the text as
-- kombu's json.dumps and compact JSON write it (the restore decides from the decoded envelope:
-- this only keeps such entries from filling every batch).
local function names_itself(v, tag)
  return string.find(v, '"delivery_tag": "' .. tag .. '"', 1, true)
    or string.find(v, '"delivery_tag":"' .. tag .. '"', 1, true)
end

local now = server_now()
local own, foreign = now - tonumber(ARGV[1]), now - tonumber(ARGV[2])
local suffix, most, window, skip = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local listed = redis.call('ZRANGE', KEYS[1], '-inf', math.max(own, foreign), 'BYSCORE',
  'LIMIT', skip, window, 'WITHSCORES')
local out = {tostring(own), tostring(foreign), '0'}
local held, found = 0, 0
for i = 1, #listed, 2 do
  if found >= most then break end
  local tag, score = listed[i], tonumber(listed[i + 1])
  local ours = #tag > #suffix and string.sub(tag, -#suffix) == suffix
  if score <= (ours and own or foreign) then
    local v = redis.call('HGET', KEYS[2], tag)
    if not v then
      redis.call('ZREM', KEYS[1], tag)
    elseif ours and score > foreign and names_itself(v, tag) then
      held = held + 1
    else
      table.insert(out, tag)
      table.insert(out, v)
      found = found + 1
    end
  else
    held = held + 1
  end
end
-- A full window goes on past what it passed over; a short one reached the end: start again.
if #listed / 2 >= window then out[3] = tostring(skip + held) end
return out
