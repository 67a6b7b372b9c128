-- The batched form of a script (group commit): `one` above is the script itself, as a function
-- of its own KEYS and ARGV; this runs it once per call of the batch, in order, each on its own
-- keys and arguments, so a batch does what its calls would have done one after another.
-- ARGV[1] how many calls (n); ARGV[2i] and ARGV[2i + 1] the i-th call's key and argument counts;
-- then every call's arguments, in order; KEYS every call's keys, in order.
-- Returns one reply per call: its own reply (an integer or a string), or {'!', error text} when it
-- raised an error or returned one (what it wrote before that stays, as with a single call; the
-- next calls still run). When every reply is a whole number (most batches), they come back as
-- one string of decimal integers separated by spaces instead: a client reads one reply element
-- instead of one per call (redis-rs spends ~200 ns on each element, whatever its size).
local n = tonumber(ARGV[1])
local out = {}
local k, a = 0, 1 + 2 * n
for i = 1, n do
  local nk, na = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local keys, args = {}, {}
  for j = 1, nk do keys[j] = KEYS[k + j] end
  for j = 1, na do args[j] = ARGV[a + j] end
  k, a = k + nk, a + na
  local ok, r = pcall(one, keys, args)
  if type(r) == 'table' and r.err then
    ok, r = false, r.err
  end
  if not ok then
    out[i] = {'!', tostring(r)}
  elseif r == nil or r == false then
    out[i] = 0
  else
    out[i] = r
  end
end
local ints, small = {}, {[-1] = '-1', [0] = '0', [1] = '1'}
for i = 1, n do
  local r = out[i]
  if type(r) ~= 'number' or r ~= math.floor(r) or r > 2^53 or r < -2^53 then return out end
  ints[i] = small[r] or string.format('%d', r)
end
return table.concat(ints, ' ')
