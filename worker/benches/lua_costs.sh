#!/usr/bin/env bash
# What Redis's Lua charges for the work the scripts do per task, measured inside one script
# (TIME before and after 20,000 rounds) on a private redis-server started on a free port:
#
#   worker/benches/lua_costs.sh
#
# Redis's Lua hashes every byte of every string it makes (its copy of Lua 5.1 has `step = 1` in
# luaS_newlstr, deps/lua/src/lstring.c), so each byte of an envelope that enters a script (a
# popped message, a concatenation, an argument) costs time in proportion to its length; a
# `redis.call` costs a fixed amount besides its command. docs/performance.md uses these figures.
set -euo pipefail
command -v redis-server >/dev/null || { echo "lua_costs.sh: redis-server is not on PATH" >&2; exit 1; }
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log"
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done

# Runs BODY (Lua, with `i` the round and `s` a string of ARGV[1] bytes) 20,000 times in one
# script and prints the µs one round took, less an empty round's. (A string made from a number,
# `s .. i`, would add Lua's number formatting, ~0.5 µs, to what is measured.)
round() {
  local what=$1 bytes=$2 body=$3
  local script="
    local s = string.rep('a', tonumber(ARGV[1]))
    redis.call('SET', 'lua_costs:value', s)
    local function now() local t = redis.call('TIME') return t[1] * 1e6 + t[2] end
    local x
    local t0 = now()
    for i = 1, 20000 do x = i end
    local t1 = now()
    for i = 1, 20000 do $body end
    local t2 = now()
    return tostring(((t2 - t1) - (t1 - t0)) / 20000)"
  printf '%-52s %8s B %8.3f µs\n' "$what" "$bytes" "$(redis-cli -p "$port" eval "$script" 0 "$bytes")"
}

printf '%-52s %10s %11s\n' "one round of" "size" "costs"
for n in 16 128 1024 4096; do
  round "a string made in Lua (concatenation)" "$n" "x = s .. (i % 2 == 0 and 'x' or 'y')"
done
for n in 16 1024; do
  round "redis.call('GET') of a value" "$n" "x = redis.call('GET', 'lua_costs:value')"
  round "redis.call('SET') of a Lua string" "$n" "redis.call('SET', 'lua_costs:other', s)"
done
round "redis.call('HEXISTS') (a small reply)" 16 "x = redis.call('HEXISTS', 'lua_costs:h', 'f')"
