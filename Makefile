# The two commands a user needs: `make` builds, `make test` installs what is missing,
# builds, and runs every test in the normal and the sanitizer build, and the C tests
# where threads meet in the ThreadSanitizer build.
BUILD      ?= build
BUILD_SAN  ?= build-san
BUILD_TSAN ?= build-tsan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all setup build build-san build-tsan test test-fast soak fuzz run bench install clean

all: build

setup:
	@scripts/setup

build: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-san: setup
	@cmake -S . -B $(BUILD_SAN) -DCMAKE_BUILD_TYPE=Debug -DHERSH_SANITIZE=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD_SAN) -j $(JOBS)

build-tsan: setup
	@cmake -S . -B $(BUILD_TSAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHERSH_TSAN=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD_TSAN) -j $(JOBS) --target tsan_tests

# Every test: normal build, sanitizer build, TSan build; the last line is
# "N passed, N failed" (", N skipped" when some could not run here).
test: build build-san build-tsan
	@scripts/test $(BUILD) $(BUILD_SAN) $(BUILD_TSAN)

# Only the normal build: quicker while working.
test-fast: build
	@scripts/test $(BUILD)

# The soak: a real Host, 50 crash-looping programs updated, stopped, started and deleted
# under API load for SOAK_SECONDS (default 1200); prints its curves, fails on a loss
# or on growth (tests/soak/soak.lua). The Host needs root.
soak: build
	@tests/soak/run.sh $(BUILD)

# The libFuzzer targets (fuzz/, docs/fuzzing.md), built by clang into build-fuzz, each run
# for FUZZ_SECONDS (default 600) in turn; prints executions, exec/s, coverage, crashes.
FUZZ_SECONDS ?= 600
fuzz: setup
	@FUZZ_SECONDS=$(FUZZ_SECONDS) JOBS=$(JOBS) fuzz/run.sh long

# The Host on 127.0.0.1:9000 (registry and storage in ./var) with examples/simple-counter
# deployed; Ctrl-C stops it. The Host needs root: scripts/run asks sudo when needed.
# scripts/run builds only what it needs (hersh, the Lua module, libhersh.a), quietly.
run: setup
	@JOBS=$(JOBS) scripts/run $(BUILD)

bench: setup
	@scripts/setup --bench
	@cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) >/dev/null
	@cmake --build build-bench -j $(JOBS)
	@scripts/bench build-bench

install: build
	@cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_SAN) $(BUILD_TSAN) build-bench
