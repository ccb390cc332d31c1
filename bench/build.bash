# SPDX-License-Identifier: MIT
# Sourced by the bench scripts (not a benchmark itself: bench/run.sh runs bench/*.sh only).
# Expects $top (the repository) and $build (the optimised tree, DW_BENCH_BUILD, default
# build-release).

# Configure $build as an optimised tree without tests, unless it is configured already.
dw_bench_setup() {
	if [ ! -f "$build/build.ninja" ]; then
		meson setup "$build" "$top" --buildtype=release -Db_ndebug=true -Dtests=false \
			-Dfault_injection=false
	fi
}

# Build one ninja target of $build (dwscale, bench/bench_db, ...): always through ninja, which
# does nothing when it is up to date, so a script run alone never measures a stale binary.
dw_bench_build() {
	dw_bench_setup
	ninja -C "$build" "$1"
}
