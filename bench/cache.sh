#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Cache benchmark: dw_cache (S3-FIFO or LRU order, chosen by shadow caches) hit ratio against
# LRU (and SIEVE and Belady's OPT, the bound no policy can pass, for reference) on the real
# traces in shared/data/cache-traces at 1/5/10/25 % of each trace's distinct keys, on Zipf(0.99)
# and on Zipf mixed with one-time scans; then 1- and 2-thread get-or-put throughput against a
# mutex-protected LRU, and peak RSS. Run by bench/run.sh (make bench), which builds
# $DW_BENCH_BUILD; run alone it uses build-release the same way.
#   bench/cache.sh [--quick]
set -euo pipefail
top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
build=${DW_BENCH_BUILD:-$top/build-release}
traces="$top/../shared/data/cache-traces"
. "$top/bench/build.bash"
dw_bench_build bench/bench_cache
if [ ! -d "$traces" ]; then
	echo "cache traces not found at $traces" >&2
	exit 1
fi
exec "$build/bench/bench_cache" "$traces" "$@"
