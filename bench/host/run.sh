#!/usr/bin/env bash
# bench/host/run.sh -- the Host benchmark: a real `hersh host` (bwrap driver) on a
# temporary storage: (a) GET /programs/{id} requests per second with 100 registered
# programs, (b) the latency of the proxy to a program's WatcherAPI beside the same request
# sent straight to it, (c) the resident memory of the Host and of each of 50 idle
# programs. See bench/host/run.lua.
#
#   bench/host/run.sh [BUILD_DIR]      (default build-bench; run by `make bench`)
#
# Needs root (programs run as the unprivileged user 65534 under bubblewrap), wrk and curl.
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
  lua5.4 bench/host/run.lua "$build" "$tmp"
