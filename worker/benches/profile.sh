#!/usr/bin/env bash
# Where the worker's time goes, sampled by the kernel's clock: the profile in time, beside
# instructions.sh's count of instructions. The two disagree where it matters: valgrind counts
# each byte a `rep movsb` copies as an instruction (memcpy read 10.7 % of the instructions and
# 5.5 % of the time) and hides the CPU's SHA extensions from the program it runs.
#
#   worker/benches/profile.sh [WORKER_BINARY]   (default: target/release/worker)
#
# Runs the drain (concurrency 64) of PROFILE_ORDERS orders (150000) under the bench, attaches
# `perf record -e cpu-clock` to the worker once it has started (the queue is full by then) for
# PROFILE_SECONDS (4), and prints the symbols that took the most samples, then the share of each
# binary (the worker, libc, the kernel). cpu-clock needs no hardware counters, so it works on a
# VM that has none. Needs perf (Debian: linux-perf) and a release build
# (`cargo build --release --workspace`); about a minute. PROFILE_KEEP=DIR keeps perf.data there.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v perf >/dev/null || { echo "profile.sh: perf is not on PATH (Debian: linux-perf)" >&2; exit 1; }
bin=$(realpath "${1:-target/release/worker}")
[[ -x "$bin" ]] || { echo "profile.sh: no worker binary at $bin" >&2; exit 1; }
orders=${PROFILE_ORDERS:-150000}
seconds=${PROFILE_SECONDS:-4}
cargo bench -q -p worker --bench stack --no-run
work=${PROFILE_KEEP:-$(mktemp -d)}
mkdir -p "$work"
bench=
# The bench runs in a process group of its own (setsid), so that stopping early stops cargo, the
# bench and its redis-server; the worker has a group of its own (testkit's) and is stopped by pid.
pid=
cleanup() {
  [[ -z "$bench" ]] || kill -- "-$bench" 2>/dev/null || true
  [[ -z "$pid" ]] || kill "$pid" 2>/dev/null || true
  [[ -n "${PROFILE_KEEP:-}" ]] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
BENCH_WORKER="$bin" BENCH_ONLY=drain BENCH_CONCURRENCY=64 BENCH_REPS=1 BENCH_DRAIN_TASKS="$orders" \
  setsid cargo bench -q -p worker --bench stack >"$work/bench.log" 2>&1 &
bench=$!
for _ in $(seq 600); do
  pid=$(pgrep -f -x "$bin( .*)?" | head -1 || true)
  [[ -n "$pid" ]] && break
  kill -0 "$bench" 2>/dev/null || { echo "profile.sh: the bench ended before the worker started:" >&2; tail -20 "$work/bench.log" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$pid" ]] || { echo "profile.sh: no worker started within a minute" >&2; exit 1; }
perf record -q -e cpu-clock -F 2000 -p "$pid" -o "$work/perf.data" -- sleep "$seconds" 2>/dev/null
wait "$bench" || { echo "profile.sh: the bench failed:" >&2; tail -20 "$work/bench.log" >&2; exit 1; }
bench=
report() {
  perf report -i "$work/perf.data" --no-children --stdio -g none "$@" 2>/dev/null >"$work/report.txt"
  grep '%' "$work/report.txt" | grep -v '^#' | sed -e 's/  */ /g' -e 's/ - - *$//' | cut -c1-150 | awk 'NR <= 40'
}
echo "== the symbols with the most samples (the worker, pid $pid, $seconds s of its drain)"
report --sort dso,symbol
echo "== by binary"
report --sort dso
