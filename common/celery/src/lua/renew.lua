-- Renews the leases of deliveries still held, with the server's clock (kombu's score, in whole
-- seconds: `lease_score`).
-- KEYS[1] unacked_index; ARGV tags. Returns how many were still held.
local score = lease_score(server_now())
local held = 0
for _, tag in ipairs(ARGV) do
  if redis.call('ZSCORE', KEYS[1], tag) then
    redis.call('ZADD', KEYS[1], score, tag)
    held = held + 1
  end
end
return held
