#!/usr/bin/env bash
# Runs the libFuzzer targets (built by fuzz/build.sh into BUILD_DIR, default build-fuzz).
#   fuzz/run.sh smoke [TARGET...]  each target on its seed corpus and fuzz/regressions/,
#                                  then fuzzing for SMOKE_SECONDS (10); ends with
#                                  "N passed, N failed" (scripts/test counts it).
#   fuzz/run.sh long [TARGET...]   each target for FUZZ_SECONDS (600), one after the
#                                  other, keeping its corpus in BUILD_DIR/corpus/<target>;
#                                  logs in BUILD_DIR/logs, crashes in BUILD_DIR/crashes.
# FUZZ_BUILD=0 skips the build (fuzz/build.sh) and runs what is built.
# Every run prints executions, exec/s, coverage (cov, ft), corpus size and crashes.
# Without clang or its fuzzer runtime nothing runs and every target counts as skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-smoke}
shift || true
build=${BUILD_DIR:-build-fuzz}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(json_reader value_writer lua_host watcher_http host_http proxy_headers upstream_head front_head)
case $mode in
  smoke) seconds=${SMOKE_SECONDS:-10} ;;
  long) seconds=${FUZZ_SECONDS:-600} ;;
  *) echo "usage: fuzz/run.sh smoke|long [TARGET...]"; exit 2 ;;
esac

# FUZZ_BUILD=0: use the targets already built (two runs side by side must not both build).
rc=0
[ "${FUZZ_BUILD:-1}" = 0 ] || { fuzz/build.sh "$build"; rc=$?; }
if [ $rc -eq 3 ]; then
  echo "0 passed, 0 failed (${#targets[@]} fuzz targets skipped: no clang fuzzer toolchain)"
  exit 0
fi
if [ $rc -ne 0 ]; then
  echo "0 passed, 1 failed (the fuzz targets do not build)"
  exit 1
fi

# summary LOG: the numbers libFuzzer printed at the end of a run.
summary() {
  local log=$1
  local execs rate last
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+$')
  rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+$')
  last=$(grep -E '^#[0-9]+' "$log" | grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*/[0-9a-zA-Z]*' | tail -n 1)
  echo "executions ${execs:-?}, ${rate:-?} exec/s, ${last:-no coverage line}"
}

pass=0
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # the Host's storage goes in there (host_http), and its sandbox user walks it
for t in "${targets[@]}"; do
  bin="$build/fuzz_$t"
  seeds=(fuzz/corpus/"$t")
  [ -d fuzz/regressions/"$t" ] && seeds+=(fuzz/regressions/"$t")
  if [ "$mode" = smoke ]; then
    corpus="$tmp/corpus-$t"
    crashes="$build/crashes-smoke/$t/"
    rm -rf "$crashes"
    log="$tmp/$t.log"
  else
    corpus="$build/corpus/$t"
    crashes="$build/crashes/$t/"
    mkdir -p "$build/logs"
    log="$build/logs/$t.log"
  fi
  mkdir -p "$corpus" "$crashes"
  # -timeout: one input may take up to two bounded 10 s waits (http_check.c, reset).
  TMPDIR="$tmp" "$bin" "$corpus" "${seeds[@]}" -max_total_time="$seconds" -print_final_stats=1 -timeout=30 \
    -artifact_prefix="$crashes" >"$log" 2>&1
  status=$?
  found=$(find "$crashes" -type f | wc -l)
  if [ $status -eq 0 ] && [ "$found" -eq 0 ]; then
    echo "ok   $t: $(summary "$log"), crashes 0"
    pass=$((pass + 1))
  else
    echo "FAIL $t (exit $status): $(summary "$log"), crashes $found in $crashes"
    grep -E 'fuzz: |ERROR: |SUMMARY: ' "$log" | head -n 5 | sed 's/^/     /'
    [ "$mode" = smoke ] && tail -n 40 "$log" | sed 's/^/     /'
    fail=$((fail + 1))
  fi
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
