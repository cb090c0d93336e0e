# A thin wrapper around CMake and ctest; README.md explains each target.
#   make run                       install deps, build, start edgekvd in the foreground
#   make test                      install deps, build (warnings are errors), run every test
#   make test SANITIZE=address,undefined
#   make fuzz                      run the fuzz targets longer (FUZZ_SECONDS each)
#   make bench                     edgekv side by side with Redis (docs/performance.md)
#   make sim                       the simulation scenarios with more seeds and sizes (docs/gossip.md)
#   make deb                       the Debian packages, build/deb/{edgekv,libedgekv-dev}_<version>_<arch>.deb (docs/packaging.md)
SANITIZE ?=
FUZZ_SECONDS ?= 300
BENCH_ARGS ?=
SIM_ARGS ?=
JOBS ?= $(shell nproc)

ifeq ($(SANITIZE),)
BUILD := build/release
FUZZ_BUILD := build/fuzz
else
BUILD := build/$(subst $(comma),-,$(SANITIZE))
FUZZ_BUILD := build/fuzz
endif
comma := ,

CMAKE_FLAGS := -G Ninja -DEDGEKV_WERROR=ON -DEDGEKV_SANITIZE=$(SANITIZE)

.PHONY: all deps build fuzz-build run test fuzz bench sim clean

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
	@cd $(BUILD) && UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ctest --output-on-failure -j $(JOBS)

bench: build
	@bench/run.sh $(BUILD) $(BENCH_ARGS)

sim: build
	@EDGEKV_SIM_SWEEP=1 $(BUILD)/tests/sim/sim_tests $(SIM_ARGS)

fuzz: fuzz-build
	@scripts/fuzz.sh $(FUZZ_BUILD)/tests/fuzz $(FUZZ_SECONDS)

.PHONY: deb
deb: deps
	@JOBS=$(JOBS) packaging/deb/build.sh

clean:
	rm -rf build
