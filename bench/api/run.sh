#!/usr/bin/env bash
# bench/api/run.sh -- the WatcherAPI benchmark: GET /watcher/status requests per second
# (wrk, keep-alive, 2 threads, 16 connections) of `hersh run bench/api/counter.lua`
# beside a minimal libmicrohttpd server answering the same bytes, measured alternately
# in the same run (median of ROUNDS rounds each); then the resident memory of an idle
# counter program, with plain lua5.4 + require "hersh" and the minimal server for scale.
#
#   bench/api/run.sh [BUILD_DIR]      (default build-bench; run by `make bench`)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-bench}
ROUNDS=${BENCH_API_ROUNDS:-3}
DURATION=${BENCH_API_DURATION:-5s}
WRK=(wrk -t2 -c16 -d"$DURATION")

tmp=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for FILE SED_EXPR: the first match of SED_EXPR in FILE, waiting up to 5 s for it.
wait_for() {
  local file=$1 expr=$2 value i
  for ((i = 0; i < 100; i++)); do
    value=$(sed -n "$expr" "$file" 2>/dev/null | head -n1)
    if [[ -n $value ]]; then
      echo "$value"
      return 0
    fi
    sleep 0.05
  done
  echo "bench/api: timed out waiting for $file:" >&2
  cat "$file" >&2 || true
  return 1
}

# start_minimal NAME: starts the minimal server; sets PID and PORT.
start_minimal() {
  "$build/bench_minimal_server" 0 >"$tmp/$1.out" &
  PID=$!
  pids+=("$PID")
  PORT=$(wait_for "$tmp/$1.out" '/^[0-9][0-9]*$/p')
}

# start_hersh NAME: starts `hersh run` of the counter; sets PID and PORT.
start_hersh() {
  "$build/hersh" run bench/api/counter.lua --port 0 2>"$tmp/$1.err" &
  PID=$!
  pids+=("$PID")
  PORT=$(wait_for "$tmp/$1.err" 's|^hersh: WatcherAPI of .* on http://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p')
}

# stop PID: stops one process started here and forgets it.
stop() {
  local pid rest=()
  kill "$1"
  wait "$1" 2>/dev/null || true
  for pid in "${pids[@]}"; do
    [[ $pid == "$1" ]] || rest+=("$pid")
  done
  pids=("${rest[@]}")
}

# rate PORT: requests per second of one wrk run.
rate() {
  local out
  out=$("${WRK[@]}" "http://127.0.0.1:$1/watcher/status")
  if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
    echo "bench/api: wrk reported errors:" >&2
    echo "$out" >&2
    return 1
  fi
  awk '/^Requests\/sec:/ { print $2 }' <<<"$out"
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# rss PID: "VmRSS VmHWM" in KiB.
rss() { awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } END { print r, h }' "/proc/$1/status"; }

mib() { awk -v k="$1" 'BEGIN { printf "%.2f MiB", k / 1024 }'; }

# ---- requests per second -------------------------------------------------------------

start_minimal minimal
min_pid=$PID min_port=$PORT
start_hersh hersh
hersh_pid=$PID hersh_port=$PORT
for port in "$min_port" "$hersh_port"; do # warm up
  if ! curl -fsS -o /dev/null "http://127.0.0.1:$port/watcher/status"; then
    echo "bench/api: no answer on port $port" >&2
    exit 1
  fi
  wrk -t2 -c16 -d1s "http://127.0.0.1:$port/watcher/status" >/dev/null
done

min_rates=() hersh_rates=()
for ((round = 1; round <= ROUNDS; round++)); do
  min_rates+=("$(rate "$min_port")")
  hersh_rates+=("$(rate "$hersh_port")")
done
stop "$min_pid"
stop "$hersh_pid"

min_rate=$(median "${min_rates[@]}")
hersh_rate=$(median "${hersh_rates[@]}")
echo "bench/api: GET /watcher/status, ${WRK[*]}, keep-alive; median of $ROUNDS rounds (req/s)"
printf '  minimal libmicrohttpd server  %10.0f   rounds: %s\n' "$min_rate" "${min_rates[*]}"
printf '  hersh run counter.lua         %10.0f   rounds: %s\n' "$hersh_rate" "${hersh_rates[*]}"
awk -v h="$hersh_rate" -v m="$min_rate" 'BEGIN {
  r = h / m
  printf "  ratio hersh / minimal         %10.2f   target >= 0.70: %s\n", r, (r >= 0.70 ? "met" : "MISSED")
}'

# ---- idle resident memory ------------------------------------------------------------

start_hersh idle
idle_pid=$PID
curl -fsS -o /dev/null "http://127.0.0.1:$PORT/watcher/status" # it answers; then it idles
start_minimal idle_minimal
idle_min_pid=$PID
LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="./$build/lua/?.so;;" \
  lua5.4 -e 'require "hersh".run_for(2)' &
lua_pid=$!
pids+=("$lua_pid")
sleep 1
read -r h_rss h_hwm < <(rss "$idle_pid")
read -r l_rss l_hwm < <(rss "$lua_pid")
read -r m_rss m_hwm < <(rss "$idle_min_pid")
echo "bench/api: resident memory, idle for 1 s (VmRSS, VmHWM)"
printf '  hersh run counter.lua            %s  (HWM %s)   target <= 5 MiB: %s\n' "$(mib "$h_rss")" \
  "$(mib "$h_hwm")" "$( ((h_rss <= 5 * 1024)) && echo met || echo MISSED)"
printf '  lua5.4 + require "hersh" (idle)  %s  (HWM %s)\n' "$(mib "$l_rss")" "$(mib "$l_hwm")"
printf '  minimal libmicrohttpd server     %s  (HWM %s)\n' "$(mib "$m_rss")" "$(mib "$m_hwm")"
stop "$idle_pid"
stop "$idle_min_pid"
stop "$lua_pid"
