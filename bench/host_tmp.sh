# bench/host_tmp.sh -- sourced by the benchmarks that start a `hersh host`: makes the
# temporary storage folder `$tmp` (reachable by the sandbox user) and, on exit, stops the Host whose pid the benchmark
# wrote to `$tmp/host.pid` should the benchmark have died before stopping it (SIGTERM,
# which stops its programs; SIGKILL after 30 s), and only then removes the folder.
tmp=$(mktemp -d)
chmod 755 "$tmp"
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
