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

tmp=$(mktemp -d)
chmod 755 "$tmp" # the sandbox user must reach the storage
# The Host run.py started, should run.py have died before stopping it: SIGTERM, SIGKILL
# after 30 s; only then the storage goes.
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

python3 bench/events/run.py "$build" "$tmp"
