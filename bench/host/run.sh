#!/usr/bin/env bash
# bench/host/run.sh -- the Host benchmark: a real `hersh host` (bwrap driver) on a
# temporary storage: (a) GET /programs/{id} requests per second with 100 registered
# programs, (b) the latency of the proxy to a program's WatcherAPI beside the same request
# sent straight to it, (c) the resident memory of the Host and of each of 50 idle
# programs; nginx proxying the same program and the minimal libmicrohttpd server beside
# it; (d) the Host with 10, 1,000 and 10,000 registered programs. See bench/host/run.lua
# and bench/host/scale.lua.
#
#   bench/host/run.sh [BUILD_DIR]      (default build-bench; run by `make bench`)
#   BENCH_HOST_SCALE=0 leaves (d) out.
#   BENCH_HOST_PROFILE=CMD runs the shell command CMD after (b)'s wrk runs, with HOST_PID, PROXIED
#   and DIRECT in its environment (strace or perf of the Host under wrk, its output on stderr).
#
# Needs root (programs run as the unprivileged user 65534 under bubblewrap), wrk, curl
# and nginx (scripts/setup --bench).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-bench}

source bench/host_tmp.sh

# The servers run.lua starts beside the Host (nginx, the minimal server), should it die
# before stopping them; then host_tmp.sh's clean-up.
stop_extra() {
  local pid
  for pid in $(cat "$tmp/extra.pids" 2>/dev/null); do
    kill -TERM "$pid" 2>/dev/null || true
  done
  cleanup
}
trap stop_extra EXIT

export LUA_PATH="./bench/?.lua;./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="./$build/lua/?.so;;"
lua5.4 bench/host/run.lua "$build" "$tmp"
# BENCH_HOST_SCALE=0: without (d), e.g. to repeat the proxy's runs alone.
[ "${BENCH_HOST_SCALE:-1}" = 0 ] || lua5.4 bench/host/scale.lua "$build" "$tmp"
