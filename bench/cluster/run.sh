#!/usr/bin/env bash
# bench/cluster/run.sh -- the swarm driver beside the bwrap driver in one run: create ->
# Ready, crash -> Ready and memory per running program (see bench/cluster/run.lua).
#
#   bench/cluster/run.sh [BUILD_DIR]      (default build-bench; BENCH_CLUSTER_N programs per driver)
#
# Needs root, bubblewrap and docker.io (scripts/setup): it starts a dockerd of its own
# (scripts.dockerd) and stops it by its PID at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-bench}
HERSH_BUILD=$build LUA_PATH="./spec/?.lua;./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="./$build/lua/?.so;;" \
  lua5.4 bench/cluster/run.lua
