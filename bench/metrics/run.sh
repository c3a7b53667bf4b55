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

source bench/host_tmp.sh

LUA_PATH="./bench/?.lua;./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="./$build/lua/?.so;;" \
  lua5.4 bench/metrics/run.lua "$build" "$tmp"
