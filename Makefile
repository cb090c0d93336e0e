# A thin wrapper around CMake and ctest; README.md explains each target.
#   make run                       install deps, build, start edgekvd in the foreground
#   make test                      install deps, build (warnings are errors), run every test
#   make test SANITIZE=address,undefined
#   make test SANITIZE=thread      the unit and simulator tests under ThreadSanitizer
#   make fuzz                      run the fuzz targets longer (FUZZ_SECONDS each)
#   make bench                     edgekv side by side with Redis (docs/performance.md)
#   make sim                       the simulation scenarios with more seeds and sizes (docs/gossip.md)
#   make chaos                     the fault harness, longer: CHAOS_SECONDS of faults, CHAOS_SEED (docs/reliability.md)
#   make deb                       the Debian packages, build/deb/{edgekv,libedgekv-dev}_<version>_<arch>.deb (docs/packaging.md)
SANITIZE ?=
FUZZ_SECONDS ?= 300
BENCH_ARGS ?=
SIM_ARGS ?=
CHAOS_SECONDS ?= 300
CHAOS_SEED ?=
CHAOS_ARGS ?=
JOBS ?= $(shell nproc)

# A sanitizer build lives beside the release one, named like CMakePresets.json's presets:
# SANITIZE=address,undefined builds in build/address-undefined, SANITIZE=thread in
# build/thread.
comma := ,
ifeq ($(SANITIZE),)
BUILD := build/release
else
BUILD := build/$(subst $(comma),-,$(SANITIZE))
endif
FUZZ_BUILD := build/fuzz
# Which tests a build runs. A sanitizer build leaves out the package tests (they build and
# check the release package, whatever this build's flags) and the fuzz tests (the fuzz
# targets are their own address,undefined build, run once by the plain `make test`).
# ThreadSanitizer runs the unit and simulator tests only: the cluster tests' edgekvd links
# libzmq and SQLite uninstrumented, whose synchronisation TSan cannot see, and the
# address,undefined run already drives the same processes. Unit tests that use libzmq
# in-process run with tests/tsan.supp, which says why.
ifeq ($(SANITIZE),)
CTEST_LABELS :=
else ifeq ($(SANITIZE),thread)
CTEST_LABELS := -L '^(unit|sim)$$'
else
CTEST_LABELS := -LE '^(package|fuzz)$$'
endif

CMAKE_FLAGS := -G Ninja -DEDGEKV_WERROR=ON -DEDGEKV_SANITIZE=$(SANITIZE)

.PHONY: all deps build fuzz-build run test fuzz bench sim chaos clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) -DEDGEKV_FUZZ_BIN_DIR=$(CURDIR)/$(FUZZ_BUILD)/tests/fuzz >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

fuzz-build: deps
	@CXX=clang++ CC=clang cmake -S . -B $(FUZZ_BUILD) -G Ninja -DEDGEKV_WERROR=ON -DEDGEKV_FUZZ_ONLY=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)

run: build
	@scripts/run-local.sh $(BUILD)

test: build fuzz-build
	@cd $(BUILD) && UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp history_size=7" \
	  ctest --output-on-failure -j $(JOBS) $(CTEST_LABELS)

bench: build
	@bench/run.sh $(BUILD) $(BENCH_ARGS)

sim: build
	@EDGEKV_SIM_SWEEP=1 $(BUILD)/tests/sim/sim_tests $(SIM_ARGS)

# Needs root (network namespaces, iptables, tmpfs). Logs: $(BUILD)/chaos/seed-N/.
chaos: build
	@/usr/bin/python3 tests/chaos/chaos_run.py --build $(BUILD) --duration $(CHAOS_SECONDS) \
	  $(if $(CHAOS_SEED),--seed $(CHAOS_SEED)) $(CHAOS_ARGS)

fuzz: fuzz-build
	@scripts/fuzz.sh $(FUZZ_BUILD)/tests/fuzz $(FUZZ_SECONDS)

.PHONY: deb
deb: deps
	@JOBS=$(JOBS) packaging/deb/build.sh

clean:
	rm -rf build
