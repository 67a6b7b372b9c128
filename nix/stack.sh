#!/usr/bin/env bash
# The local stack without Nix: redis-server (from PATH, unless one already answers at REDIS_URL)
# plus the worker and both services, configured from .env.example (and .env if present).
# Ctrl-C stops everything. With Nix, `nix run` does the same through process-compose.
# Needs cargo, redis-server and redis-cli on PATH and names whatever is missing; as root on
# Debian/Ubuntu, STACK_INSTALL=1 installs redis-server (with redis-cli) through apt-get instead.
set -euo pipefail
cd "$(dirname "$0")/.."

missing_tools() {
  local tool
  for tool in cargo redis-server redis-cli; do
    command -v "$tool" >/dev/null 2>&1 || printf '%s\n' "$tool"
  done
}
can_install() {
  [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1
}
mapfile -t missing < <(missing_tools)
if [ "${STACK_INSTALL:-}" = 1 ] && [[ " ${missing[*]} " == *" redis-"* ]] && can_install; then
  echo "stack.sh: installing redis-server (and redis-cli) with apt-get (STACK_INSTALL=1)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
  mapfile -t missing < <(missing_tools)
fi
if [ ${#missing[@]} -gt 0 ]; then
  {
    echo "stack.sh: missing ${missing[*]}; nothing was started."
    for tool in "${missing[@]}"; do
      case $tool in
      cargo)
        echo "  cargo: Rust's build tool, builds the worker and both services."
        if [ -x "$HOME/.cargo/bin/cargo" ]; then
          echo "    It is in ~/.cargo/bin, which is not on PATH: run . \"\$HOME/.cargo/env\" first."
        else
          echo "    Install Rust with rustup (https://rustup.rs):"
          echo "    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh"
        fi
        ;;
      redis-server)
        echo "  redis-server: the Redis server, the broker and result backend. Debian/Ubuntu:"
        echo "    sudo apt-get install redis-server (brings redis-cli too); elsewhere your"
        echo "    system's redis package."
        ;;
      redis-cli)
        echo "  redis-cli: the Redis client, checks that Redis answers. Debian/Ubuntu:"
        echo "    sudo apt-get install redis-server (brings redis-cli too)."
        ;;
      esac
    done
    echo "Or, with Nix: \`nix run\` starts the same stack with every tool provided."
    if [[ " ${missing[*]} " == *" redis-"* ]]; then
      if [ "${STACK_INSTALL:-}" = 1 ] && can_install; then
        echo "apt-get install redis-server ran, yet ${missing[*]} still not on PATH."
      elif [ "${STACK_INSTALL:-}" = 1 ]; then
        echo "STACK_INSTALL=1 installs redis-server only as root on Debian/Ubuntu (with apt-get)."
      else
        echo "As root on Debian/Ubuntu, STACK_INSTALL=1 $0 installs redis-server itself."
      fi
    fi
  } >&2
  exit 1
fi

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
