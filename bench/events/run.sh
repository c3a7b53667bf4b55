#!/usr/bin/env bash
# bench/events/run.sh -- the latency of an event to 100 SSE subscribers of a real
# `hersh host` (GET /events), from the time the Host records it to the time each
# subscriber has read it: median and p99, beside the same fan-out of the same bytes by a
# plain loopback server (bench/events/run.py --baseline), alternating, in the same run.
#
#   bench/events/run.sh [BUILD_DIR]      (default build-bench; run by scripts/bench)
#
# Needs python3 (scripts/setup) and curl-free loopback only; no program is started.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-bench}

source bench/host_tmp.sh

python3 bench/events/run.py "$build" "$tmp"
