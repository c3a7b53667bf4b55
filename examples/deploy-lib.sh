# Sourced by each example's deploy.sh. `deploy USER_ID FILE... [--env NAME=VALUE]...`
# creates a program from the example's Dockerfile and FILEs through the Host's REST
# API (POST /programs), starts it (POST /programs/{id}/start), waits until it is Ready
# and prints, on stdout:
#   program_id=<id>
#   proxy_url=<url>
# Progress and errors go to stderr. The JSON body is built by json.lua (lua5.4 and
# lua-cjson), so nothing in a source file can break the request.
#   HOST          the Host, default http://127.0.0.1:9000
#   HERSH_TOKEN   the bearer token, for a Host started with --token-file
#   WAIT_SECONDS  how long to wait for Ready (default 120); 0: do not wait
set -euo pipefail

HOST=${HOST:-http://127.0.0.1:9000}
HOST=${HOST%/}
EXAMPLES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# api METHOD PATH [curl args...]: prints the response body; fails, with the Host's
# answer on stderr, when the Host cannot be reached or answers an HTTP error.
api() {
  local method=$1 path=$2 out code
  shift 2
  local auth=()
  [ -n "${HERSH_TOKEN:-}" ] && auth=(-H "Authorization: Bearer $HERSH_TOKEN")
  if ! out=$(curl -sS --max-time 30 -w '\n%{http_code}' -X "$method" "${auth[@]}" "$@" "$HOST$path"); then
    echo "deploy: cannot reach the Host at $HOST (is it running? make run starts one)" >&2
    return 1
  fi
  code=${out##*$'\n'}
  out=${out%$'\n'*}
  if [ "$code" -ge 400 ]; then
    echo "deploy: $method $path: HTTP $code: $out" >&2
    return 1
  fi
  printf '%s\n' "$out"
}

field() { # field NAME < json
  lua5.4 "$EXAMPLES_DIR/json.lua" get "$1"
}

deploy() {
  local user_id=$1 dir
  shift
  dir=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
  local created id
  created=$(lua5.4 "$EXAMPLES_DIR/json.lua" create "$user_id" "$dir" "$@" |
    api POST /programs -H 'Content-Type: application/json' --data-binary @-)
  id=$(field program_id <<<"$created")
  echo "deploy: created $id, building and starting" >&2
  api POST "/programs/$id/start" >/dev/null

  local wait=${WAIT_SECONDS:-120} deadline=$((SECONDS + ${WAIT_SECONDS:-120})) view state
  while [ "$wait" != 0 ]; do
    view=$(api GET "/programs/$id")
    state=$(field state <<<"$view")
    [ "$state" = Ready ] && break
    if [ "$state" = Error ] || [ "$SECONDS" -ge "$deadline" ]; then
      local error kind=runtime
      error=$(field error_msg <<<"$view")
      echo "deploy: $id is $state: $error" >&2
      [[ "$error" == "build failed"* || "$state" = Building ]] && kind=build
      echo "deploy: the end of its $kind log:" >&2
      api GET "/programs/$id/logs?type=$kind&tail=20" >&2 || true
      return 1
    fi
    sleep 0.5
  done
  [ "$wait" != 0 ] && echo "deploy: $id is Ready" >&2
  echo "program_id=$id"
  echo "proxy_url=$(field proxy_url <<<"$created")"
}
