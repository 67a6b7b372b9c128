#!/usr/bin/env bash
# Instructions the worker runs per order, counted by cachegrind: a cost this VM's noisy CPU time
# cannot move (timed runs spread by up to 30 %; these repeat within about 1 %).
#
#   worker/benches/instructions.sh [WORKER_BINARY...]   (default: target/release/worker)
#
# For each binary, the drain (concurrency 64: plain, task events on, notifications on a second
# queue) runs twice, with 2,000 and 6,000 orders, the worker under cachegrind; the difference
# divided by 4,000 is the instructions of one order (its task and the publishing of its
# confirmation), start-up and shutdown cancelled out. Needs valgrind and a release build
# (`cargo build --release --workspace`); about 30 s per binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not on PATH" >&2; exit 1; }
[[ $# -gt 0 ]] || set -- target/release/worker
cargo bench -q -p worker --bench stack --no-run
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%-40s %14s %14s %14s\n' "worker" "plain" "events on" "second queue"
for bin in "$@"; do
  bin=$(realpath "$bin")
  declare -A count=()
  for n in 2000 6000; do
    rm -rf "$work/$n" && mkdir -p "$work/$n"
    BENCH_WORKER="$bin" \
      BENCH_WORKER_UNDER="valgrind --tool=cachegrind --cache-sim=no --log-file=/dev/null --cachegrind-out-file=$work/$n/cg.%p" \
      BENCH_ONLY=drain BENCH_CONCURRENCY=64 BENCH_REPS=1 BENCH_DRAIN_TASKS=$n \
      cargo bench -q -p worker --bench stack >"$work/bench.log" 2>&1 || {
      echo "instructions.sh: the bench failed for $bin ($n orders):" >&2
      tail -20 "$work/bench.log" >&2
      exit 1
    }
    i=0
    # The three drains ran one after the other: oldest file first.
    for f in $(ls -tr "$work/$n"); do
      count[$n.$i]=$(awk '/^summary:/ {print $2}' "$work/$n/$f")
      i=$((i + 1))
    done
  done
  row=()
  for i in 0 1 2; do
    row+=("$(( (${count[6000.$i]:-0} - ${count[2000.$i]:-0}) / 4000 ))")
  done
  printf '%-40s %14s %14s %14s\n' "$bin" "${row[@]}"
  unset count
done
