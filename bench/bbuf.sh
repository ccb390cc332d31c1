#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Stream benchmark: a 2 GiB file through dw_bbuf (64 KiB chunks, 64 MiB cap) to /dev/null against
# a plain read() loop with the same chunk size, alternating runs, median of 5 each; prints both
# throughputs, the ratio dwscale/plain (goal >= 0.9) and peak RSS (goal <= cap + 16 MiB). Run by
# bench/run.sh (make bench), which builds $DW_BENCH_BUILD; run alone it uses build-release the
# same way.
#   bench/bbuf.sh [bench_bbuf options: --size 2G --chunk 65536 --cap 64M --runs 5]
# The file lives on the real disk: $DW_BENCH_TMPDIR, else $TMPDIR, else /var/tmp. It is created
# once, reused by later runs in the same invocation, and deleted at the end unless
# DW_BENCH_KEEP=1 (then the next run reuses it).
set -euo pipefail
top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
build=${DW_BENCH_BUILD:-$top/build-release}
. "$top/bench/build.bash"
dw_bench_build bench/bench_bbuf
dir=${DW_BENCH_TMPDIR:-${TMPDIR:-/var/tmp}}
file="$dir/dwscale-bench-bbuf.dat"
if [ "${DW_BENCH_KEEP:-0}" != 1 ]; then
	trap 'rm -f "$file" "$file.tmp"' EXIT
fi
"$build/bench/bench_bbuf" "$file" "$@"
