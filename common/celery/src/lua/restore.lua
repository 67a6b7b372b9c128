-- Gives expired deliveries back to their queues, each only if it is still exactly as it was
-- listed (same value, lease not renewed since), like kombu's WATCH/MULTI restore. Each entry is
-- checked and moved on its own: one that changed meanwhile stays, the others are moved.
-- KEYS[1] unacked, KEYS[2] unacked_index, KEYS[2 + i] the queue list of the i-th entry;
-- ARGV[1] the cutoff of this project's workers' entries, ARGV[2] everybody else's; ARGV[4i - 1]
-- the i-th tag, ARGV[4i] its value as listed, ARGV[4i + 1] the envelope to push, ARGV[4i + 2]
-- '1' when the entry is a lease of this project's (decided from its decoded envelope: a field
-- ending with `keys::LEASE_SUFFIX` that is not the message's own delivery tag).
-- Returns one code per entry: 1 restored, 0 changed meanwhile (left alone), -1 its queue list
-- holds another type (left alone).
local own, foreign = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS - 2 do
  local tag, listed, list = ARGV[4 * i - 1], ARGV[4 * i], KEYS[2 + i]
  local ours = ARGV[4 * i + 2] == '1'
  local score = redis.call('ZSCORE', KEYS[2], tag)
  if not score or tonumber(score) > (ours and own or foreign)
    or redis.call('HGET', KEYS[1], tag) ~= listed then
    out[i] = 0
  elseif not writable(list, 'list') then
    out[i] = -1
  else
    ack(KEYS[1], KEYS[2], tag)
    redis.call('RPUSH', list, ARGV[4 * i + 1])
    out[i] = 1
  end
end
return out
