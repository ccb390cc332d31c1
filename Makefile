# SPDX-License-Identifier: MIT
# dwscale: the two commands are `make run` and `make test`; both install what is missing first.
#
#   make run     install deps, build, start `dwscale serve` on embedded defaults (127.0.0.1:7070, ./var)
#   make test    install deps, build, run every test; ends with "N passed, N failed"
#   make bench   benchmarks against the real peers (fio, restic, borg, psql, serf), ratios printed
#   make asan    unit tests under ASan+UBSan       make tsan   unit tests under TSan
#   make fuzz    short libFuzzer runs (clang)      make format clang-format every C file
#
# Under CI (CI=true) warnings are errors.

BUILD      ?= build
MESON_ARGS ?=
ifeq ($(CI),true)
MESON_ARGS += -Dwerror=true
endif
FUZZ_SECONDS ?= 30

.PHONY: all deps build run test unit system asan tsan fuzz bench format clean

all: build

deps:
	@scripts/install-deps.sh

# Configure once, then let ninja decide what to rebuild. --reconfigure picks up new source files.
$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_ARGS)

build: deps $(BUILD)/build.ninja
	meson setup --reconfigure $(BUILD) $(MESON_ARGS) >/dev/null
	ninja -C $(BUILD)

run: build
	./$(BUILD)/dwscale serve

test: deps
	BUILD=$(BUILD) MESON_ARGS="$(MESON_ARGS)" scripts/test-all.sh

unit: build
	meson test -C $(BUILD) --print-errorlogs

system: build
	DWSCALE_BIN=$(CURDIR)/$(BUILD)/dwscale /usr/bin/python3 -m pytest -q tests/system

asan: deps
	BUILD=$(BUILD) MESON_ARGS="$(MESON_ARGS)" scripts/test-all.sh --only asan

tsan: deps
	BUILD=$(BUILD) MESON_ARGS="$(MESON_ARGS)" scripts/test-all.sh --only tsan

fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

bench:
	@scripts/install-deps.sh --bench
	bench/run.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-tsan build-fuzz build-release
