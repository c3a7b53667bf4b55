#!/usr/bin/env bash
# Installs a build into a temporary prefix and uses it the ways a user would: the C
# example built with pkg-config, hersh.core from plain lua5.4, and the hersh binary.
# Prints "N passed, N failed".
set -uo pipefail
build=${1:?usage: run.sh BUILD_DIR}
root=$(cd "$(dirname "$0")/../.." && pwd)
prefix=$(mktemp -d)
work=$(mktemp -d)
trap 'rm -rf "$prefix" "$work"' EXIT
passed=0
failed=0

check() { # check NAME EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then
    passed=$((passed + 1)); echo "ok   $1"
  else
    failed=$((failed + 1)); printf 'FAIL %s\n  expected: %q\n  actual:   %q\n' "$1" "$2" "$3"
  fi
}

if ! cmake --install "$root/$build" --prefix "$prefix" >"$work/install.log" 2>&1; then
  cat "$work/install.log"
  echo "0 passed, 1 failed"
  exit 1
fi
check "installs hersh.h, libhersh and hersh.pc" "yes" \
  "$([ -f "$prefix/include/hersh.h" ] && [ -f "$prefix/lib/libhersh.a" ] && [ -f "$prefix/lib/libhersh.so" ] &&
     [ -f "$prefix/lib/pkgconfig/hersh.pc" ] && echo yes)"

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cp "$root/examples/c-counter/counter.c" "$root/examples/c-counter/Makefile" "$work/"
make -s -C "$work" counter >"$work/build.log" 2>&1 || cat "$work/build.log"
check "examples/c-counter builds with pkg-config and counts" \
  "$(printf 'Counter: 1\nCounter: 2\nCounter: 3')" "$("$work/counter" 2>&1)"

check "hersh.core loads from plain lua5.4 on the installed paths" "Stopped" \
  "$(cd "$work" && LUA_PATH="$prefix/share/lua/5.4/?.lua;$prefix/share/lua/5.4/?/init.lua;;" \
     LUA_CPATH="$prefix/lib/lua/5.4/?.so;;" lua5.4 -e '
       local hersh = require "hersh"
       local w = hersh.watcher()
       w:manage(function(msg) if msg then return hersh.stop("done") end end)
       w:start(); w:send("x"); hersh.run(); io.write(w:state())' 2>&1)"

check "hersh.json loads from plain lua5.4 on the installed paths" '{"a":"/","b":[]}' \
  "$(cd "$work" && LUA_CPATH="$prefix/lib/lua/5.4/?.so;;" lua5.4 -e '
       local json = require "hersh.json"
       io.write(json.encode{ b = json.array{}, a = "/" })' 2>&1)"

check "the installed hersh binary runs a script" "1" \
  "$(cd "$work" && HERSH_LUA_DIR="$prefix/share/lua/5.4" "$prefix/bin/hersh" run /dev/stdin --port 0 <<'LUA' 2>"$work/run.err"
local hersh = require "hersh"
local w = hersh.watcher()
w:manage(function(msg, ctx) if msg then ctx:print(msg.content) return hersh.stop() end end)
w:start(); w:send("1")
LUA
)"
grep -v "^hersh: WatcherAPI of" "$work/run.err" >&2

check "installs the man page and the bash and zsh completions" "yes" \
  "$([ -s "$prefix/share/man/man1/hersh.1" ] && [ -s "$prefix/share/bash-completion/completions/hersh" ] &&
     [ -s "$prefix/share/zsh/site-functions/_hersh" ] && echo yes)"
check "the installed man page is the one hersh prints" "same" \
  "$(HERSH_LUA_DIR="$prefix/share/lua/5.4" "$prefix/bin/hersh" man | cmp -s - "$prefix/share/man/man1/hersh.1" && echo same)"
check "the installed bash completion parses and completes hersh's commands" "yes" \
  "$(bash -c "source '$prefix/share/bash-completion/completions/hersh' && complete -p hersh" >/dev/null 2>&1 && echo yes)"

# The installed Host finds the dashboard in share/hersh/ui (lua/host/ui.lua), without
# the notes of ui/*.md. The sandbox user must reach its storage: $work is made 0700.
chmod 755 "$work"
HERSH_LUA_DIR="$prefix/share/lua/5.4" "$prefix/bin/hersh" host --port 0 --storage "$work/storage" \
  --ports 29990-29991 2>"$work/host.err" &
host_pid=$!
port=""
for _ in $(seq 100); do
  port=$(sed -n 's/.*serving http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/host.err")
  [ -n "$port" ] && break
  sleep 0.1
done
check "the installed Host serves the dashboard from share/hersh/ui" "yes" \
  "$([ -n "$port" ] && curl -s --max-time 10 "http://127.0.0.1:$port/ui/programs" | cmp -s - "$root/ui/index.html" &&
     [ ! -e "$prefix/share/hersh/ui/CONTRACT.md" ] && echo yes)"
kill -TERM "$host_pid" 2>/dev/null
wait "$host_pid"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
