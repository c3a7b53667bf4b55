#!/usr/bin/env bash
# bench/metrics/run.sh -- the time of a Host's GET /metrics scrape with 1,000 registered
# and 50 running programs (each in a cgroup: memory and pids limits), beside GET /health
# in the same run. See bench/metrics/run.lua.
#
#   bench/metrics/run.sh [BUILD_DIR]      (default build-bench; run by scripts/bench)
#
# Needs root (programs run as the unprivileged user 65534 under bubblewrap) and curl.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-bench}

tmp=$(mktemp -d)
# The Host run.lua started, should run.lua have died before stopping it: SIGTERM (it stops
# its programs), SIGKILL after 30 s; only then the storage goes.
cleanup() {
  local pid i
  pid=$(cat "$tmp/host.pid" 2>/dev/null || true)
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && grep -q '^Name:\s*hersh$' "/proc/$pid/status" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="./$build/lua/?.so;;" \
  lua5.4 bench/metrics/run.lua "$build" "$tmp"
