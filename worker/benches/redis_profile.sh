#!/usr/bin/env bash
# Where redis-server's CPU goes in the drain: perf samples the bench's redis-server for the life
# of the plain drain's worker (one queue, concurrency 64), and the samples are summed by what
# they are: Lua's VM and calls, Lua's string interning, Lua's allocator and collector, Redis's
# commands and networking, jemalloc, libc's copies, the kernel. The bench's commandstats say which
# commands and scripts take the time; this says what inside Redis does.
#
#   REDIS_SERVER=<redis-server with symbols> worker/benches/redis_profile.sh [ORDERS]
#
# ORDERS defaults to 60000 (about 15,000 samples). Debian's redis-server is stripped, so build
# one with symbols from the same version's source, e.g. with deb-src enabled:
#   apt-get source --download-only redis && tar xzf redis_*.orig.tar.gz
#   make -C redis-7.0.15 OPTIMIZATION="-O2 -fno-omit-frame-pointer"
#   REDIS_SERVER=redis-7.0.15/src/redis-server worker/benches/redis_profile.sh
# (the bench then runs that server for everything; its Lua is the vendored one Debian ships too).
# Needs perf and a release build (`cargo build --release --workspace`); nothing else running.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v perf >/dev/null || { echo "redis_profile.sh: perf is not on PATH" >&2; exit 1; }
server=$(realpath "${REDIS_SERVER:?set REDIS_SERVER to a redis-server built with symbols}")
orders=${1:-60000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin"
ln -s "$server" "$work/bin/redis-server"

# Started in the worker's place: the first worker (the plain drain) runs while perf samples the
# redis-server of its REDIS_URL, until it exits (perf in a session of its own, so the bench's
# stopping the worker's process group does not stop it); later workers just run.
cat >"$work/under.sh" <<EOF
#!/usr/bin/env bash
if mkdir "$work/first" 2>/dev/null; then
  port=\${REDIS_URL##*:}
  port=\${port%%/*}
  pid=\$(pgrep -n -f "redis-server .*:\$port( |\$)")
  setsid perf record -q -e cpu-clock -F 4000 -p "\$pid" -o "$work/perf.data" \\
    -- tail --pid=\$\$ -f /dev/null >"$work/perf.log" 2>&1 &
fi
exec "\$@"
EOF
chmod +x "$work/under.sh"

cargo bench -q -p worker --bench stack --no-run
PATH="$work/bin:$PATH" BENCH_WORKER_UNDER="$work/under.sh" BENCH_ONLY=drain \
  BENCH_CONCURRENCY=64 BENCH_REPS=1 BENCH_DRAIN_TASKS="$orders" \
  cargo bench -q -p worker --bench stack >"$work/bench.log" 2>&1 || {
  echo "redis_profile.sh: the bench failed:" >&2
  tail -20 "$work/bench.log" >&2
  exit 1
}
grep -F "| cost per order, concurrency 64: " "$work/bench.log" || true
# perf writes its file when the worker it waits on has gone: wait for it.
for _ in $(seq 100); do
  pgrep -f "perf record .* -o $work/perf.data" >/dev/null || break
  sleep 0.1
done
[ -s "$work/perf.data" ] || {
  echo "redis_profile.sh: perf recorded nothing:" >&2
  cat "$work/perf.log" >&2
  exit 1
}
perf report -i "$work/perf.data" --stdio --no-children --sort symbol -g none 2>/dev/null |
  grep -E '^# Samples' || true
perf report -i "$work/perf.data" --stdio --no-children --sort symbol -g none --percent-limit 0 \
  2>/dev/null | awk '
  # The group of a symbol ("[.] name" or "[k] name").
  function group(kind, name) {
    if (kind == "[k]") return "the kernel (sockets, scheduling)"
    if (name == "luaS_newlstr") return "Lua: interning each new string (hashes its every byte)"
    if (name ~ /^(sweeplist|propagatemark|singlestep|luaC_|reallymarkobject|traverse|freeobj|markroot|atomic|cleartable|sweepstrgc|GCTM|checkSizes|luaS_resize)/)
      return "Lua: the garbage collector"
    if (name ~ /^(_int_malloc|_int_free|malloc|free|realloc|malloc_consolidate|unlink_chunk|_int_realloc|cfree|__libc_(malloc|free|realloc))(\.|$)/)
      return "libc malloc and free (Lua allocates with them)"
    if (name ~ /^(je_|zmalloc|zfree|zrealloc|zcalloc|ztry|zlibc)/) return "jemalloc (Redis objects)"
    if (name ~ /^__(mem|str)/) return "libc copies and compares"
    if (name ~ /^(lua|l_|str_|json_|strbuf|index2adr|call$|newkey|resize$|rehash$|computesizes|numusehash|adjust_varargs|tryfuncTM|setarrayvector|setnodevector|auxgetstr|lmemfind|match|singlematch|classend|push_onecapture|push_captures|do_match|max_expand|start_capture|end_capture|matchbalance|addquoted|tconcat|ipairsaux|freeLuaRedisArgv|evalGenericCommand|evalShaCommand|script|ldb|redisProtocolToLua)/)
      return "Lua: the VM, tables, its library, calls into Redis and back"
    return "Redis: commands, keyspace, replies, networking"
  }
  /^ +[0-9.]+%/ {
    share = $1 + 0; kind = $2; name = $3
    g = group(kind, name)
    total[g] += share
    if (n[g] < 5) { top[g] = top[g] (n[g] ? ", " : "") name " " share; n[g]++ }
  }
  END {
    for (g in total) printf "%6.1f %%  %s (%s)\n", total[g], g, top[g] | "sort -rn"
  }'
