#!/usr/bin/env bash
# bench/http/run.sh -- requests per second of 100 concurrent hersh.http.get polls on one
# loop beside wrk against the same local server, in the same run. See bench/http/run.lua.
#
#   bench/http/run.sh [BUILD_DIR]      (default build-bench; run by scripts/bench)
#
# Needs wrk (scripts/setup installs it with the benchmark tools).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-bench}
LUA_PATH="./bench/?.lua;./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="./$build/lua/?.so;;" \
  lua5.4 bench/http/run.lua "$build"
