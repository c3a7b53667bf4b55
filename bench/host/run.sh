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

source bench/host_tmp.sh

LUA_PATH="./bench/?.lua;./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="./$build/lua/?.so;;" \
  lua5.4 bench/host/run.lua "$build" "$tmp"
