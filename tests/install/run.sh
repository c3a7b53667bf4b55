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

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
