#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make fuzz: builds every tests/fuzz/fuzz_<name>.c as a libFuzzer binary with clang (ASan+UBSan)
# and runs each for FUZZ_SECONDS (default 30) over a scratch copy of its corpus. New inputs that
# reach new coverage are left in build-fuzz/corpus/<name>; crashes are saved as
# build-fuzz/crash-<name>-* and fail the run.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-30}
dir=build-fuzz
if [ ! -f "$dir/build.ninja" ]; then
	CC=clang meson setup "$dir" -Dfuzz=true -Dbench=false -Db_sanitize=address,undefined \
		-Db_lundef=false || exit 1
fi
ninja -C "$dir" || exit 1
rc=0
for src in tests/fuzz/fuzz_*.c; do
	name=$(basename "$src" .c)
	name=${name#fuzz_}
	bin="$dir/tests/fuzz/fuzz_$name"
	[ -x "$bin" ] || { echo "fuzz: $bin not built"; rc=1; continue; }
	mkdir -p "$dir/corpus/$name"
	cp -n tests/fuzz/corpus/"$name"/* "$dir/corpus/$name/" 2>/dev/null || true
	echo "==== fuzz $name for ${secs}s"
	if ! "$bin" -max_total_time="$secs" -artifact_prefix="$dir/crash-$name-" \
		"$dir/corpus/$name" 2>&1 | tail -5; then
		echo "fuzz $name: FAILED (see $dir/crash-$name-*)"
		rc=1
	fi
done
exit $rc
