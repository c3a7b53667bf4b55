#!/usr/bin/env bash
# Runs the soak (tests/soak/soak.lua) against a build: SOAK_SECONDS (default 1200),
# SOAK_PROGRAMS (default 50), SOAK_SAMPLE (seconds between rows), SOAK_SEED. Prints
# "N passed, N failed"; exits non-zero on any failure.
set -uo pipefail
build=${1:?usage: run.sh BUILD_DIR}
cd "$(dirname "$0")/../.."
export HERSH_BUILD=$build
export LUA_PATH="./lua/?.lua;./lua/?/init.lua;./spec/?.lua;;"
export LUA_CPATH="./$build/lua/?.so;;"
exec lua5.4 tests/soak/soak.lua
