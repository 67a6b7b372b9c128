#!/usr/bin/env bash
# The local stack without Nix: redis-server (from PATH, unless one already answers at REDIS_URL)
# plus the worker and both services, configured from .env.example (and .env if present).
# Ctrl-C stops everything. With Nix, `nix run` does the same through process-compose.
set -euo pipefail
cd "$(dirname "$0")/.."

set -a
# shellcheck disable=SC1091
. ./.env.example
# shellcheck disable=SC1091
[ -f .env ] && . ./.env
set +a

cargo build --workspace --bins

pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

hostport=${REDIS_URL#*://}
hostport=${hostport#*@}
hostport=${hostport%%/*}
port=${hostport##*:}
if redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then
  echo "using the Redis already answering at port $port"
else
  mkdir -p data/redis
  redis-server --port "$port" --bind 127.0.0.1 --dir data/redis --appendonly yes --save "" &
  pids+=($!)
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
fi

./target/debug/worker &
pids+=($!)
./target/debug/service-order &
pids+=($!)
./target/debug/service-notification &
pids+=($!)

echo "stack up: orders on http://$ORDER_BIND, notifications on http://$NOTIFICATION_BIND (Ctrl-C stops)"
wait -n "${pids[@]}"
