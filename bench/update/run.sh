#!/usr/bin/env bash
# bench/update/run.sh -- update in place of a running program under wrk load, beside a
# plain restart in the same run: time from the request to the new process serving, and
# the requests that failed (goal for the update: 0). See bench/update/run.lua.
#
#   bench/update/run.sh [BUILD_DIR]      (default build-bench)
#
# Needs root (programs run as user 65534 under bubblewrap), wrk (scripts/setup --bench)
# and curl. The Host and its storage are removed by run.lua (scripts.host_harness).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-bench}
command -v wrk >/dev/null || { echo "bench/update: wrk is not installed (scripts/setup --bench)" >&2; exit 1; }
HERSH_BUILD=$build LUA_PATH="./spec/?.lua;./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="./$build/lua/?.so;;" \
  lua5.4 bench/update/run.lua
