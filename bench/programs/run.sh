#!/usr/bin/env bash
# bench/programs/run.sh -- the Programs benchmark: spawn-to-Ready, crash-to-Ready and
# idle memory of a sandboxed FROM hersh counter under the bwrap driver and the gvisor
# one where runsc can start (host.supervisor), beside the bare bubblewrap and runsc
# starts measured in the same run. See bench/programs/run.lua.
#
#   bench/programs/run.sh [BUILD_DIR]      (default build-bench; run by `make bench`)
#
# Needs root (the programs run as the unprivileged user 65534, and their state directory
# is chown'ed to it) and bubblewrap; runsc for the gvisor rows.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-bench}

tmp=$(mktemp -d)
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

LUA_PATH="./bench/?.lua;./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="./$build/lua/?.so;;" \
  lua5.4 bench/programs/run.lua "$build" "$tmp"
