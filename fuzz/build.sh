#!/usr/bin/env bash
# Builds the libFuzzer targets into BUILD_DIR (default build-fuzz): libhersh compiled
# by clang with coverage (-fsanitize=fuzzer-no-link) and ASan+UBSan, then one
# executable per target, fuzz_<name>. Exits 3 (and says why) when clang or its
# fuzzer runtime is missing, so callers can count the fuzz suite as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}

if ! command -v clang >/dev/null; then
  echo "fuzz: clang is not installed (scripts/setup installs it)"
  exit 3
fi
if ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { (void)d; (void)n; return 0; }' |
    clang -x c -fsanitize=fuzzer -o /dev/null - 2>/dev/null; then
  echo "fuzz: clang cannot link -fsanitize=fuzzer (libclang-rt-14-dev is missing)"
  exit 3
fi

cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DHERSH_SANITIZE=ON \
  "-DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link -O1" >/dev/null
cmake --build "$build" -j "${JOBS:-2}" --target hersh_static >/dev/null

flags=(-std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror -fno-omit-frame-pointer
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
       -Iinclude -Isrc -Ifuzz $(pkg-config --cflags lua5.4) "-DHERSH_FUZZ_LUA_DIR=\"$PWD/fuzz\"")
# What libhersh.a needs, from the hersh.pc the build wrote (so new dependencies follow).
read -r -a deps <<<"$(pkg-config --libs $(PKG_CONFIG_PATH=$build pkg-config --print-requires-private hersh))"
libs=("$build/libhersh.a" "${deps[@]}" -lpthread -lm -ldl)

# target: its sources besides common.c
declare -A sources=(
  [json_reader]="fuzz/json_reader.c"
  [value_writer]="fuzz/value_writer.c"
  [lua_host]="fuzz/lua_host.c fuzz/lua_embed.c"
  [watcher_http]="fuzz/watcher_http.c fuzz/http_check.c"
  [host_http]="fuzz/host_http.c fuzz/http_check.c fuzz/lua_embed.c"
  [proxy_headers]="fuzz/proxy_headers.c"
  [upstream_head]="fuzz/upstream_head.c"
  [front_head]="fuzz/front_head.c"
)
for name in "${!sources[@]}"; do
  out="$build/fuzz_$name"
  clang "${flags[@]}" ${sources[$name]} fuzz/common.c -o "$out" "${libs[@]}"
done
echo "fuzz: built ${!sources[*]} in $build"
