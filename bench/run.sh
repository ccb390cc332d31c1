#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make bench: builds an optimised tree (build-release) and runs every benchmark script in bench/
# (bench/<name>.sh) in turn. Each compares dwscale against the real peer in the same run and
# prints ratios and peak RSS. Results are also appended to bench/out/<name>.txt.
#   bench/run.sh [NAME...]     run only the named benchmarks (cache, bbuf, io, ...)
set -uo pipefail
cd "$(dirname "$0")/.."
export DW_BENCH_BUILD=${DW_BENCH_BUILD:-$PWD/build-release}
top=$PWD build=$DW_BENCH_BUILD
. bench/build.bash
dw_bench_setup || exit 1
ninja -C "$DW_BENCH_BUILD" || exit 1
mkdir -p bench/out
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
	for f in bench/*.sh; do
		n=$(basename "$f" .sh)
		[ "$n" = run ] || names+=("$n")
	done
fi
rc=0
for n in "${names[@]}"; do
	echo "==== bench $n ($(date -u +%FT%TZ), $(nproc) cores)"
	if ! bash "bench/$n.sh" 2>&1 | tee "bench/out/$n.txt"; then
		echo "bench $n: FAILED"
		rc=1
	fi
done
exit $rc
