#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The shared library exports only the public dw_* API, under the versioned symbol map:
# no dw__ internals, no helper symbols without the prefix.
set -euo pipefail
lib=$1
bad=$(nm -D --defined-only "$lib" | awk '$2 ~ /[TDBR]/ {print $3}' | sed 's/@.*//' |
	grep -v -E '^dw_[a-z]' | grep -v -E '^DWSCALE_' || true)
if [ -n "$bad" ]; then
	echo "unexpected exports from $lib:"; echo "$bad"; exit 1
fi
# Read nm's output once: `nm | grep -q` under pipefail fails at random when grep stops reading
# early and nm dies of SIGPIPE (a large sanitizer build makes that likely).
syms=$(nm -D --defined-only --with-symbol-versions "$lib")
n=$(grep -c ' T dw_' <<<"$syms" || true)
if [ "$n" -lt 10 ]; then echo "only $n dw_ functions exported from $lib"; exit 1; fi
if grep -q ' T dw__' <<<"$syms"; then echo "internal dw__ symbol exported"; exit 1; fi
grep -q 'dw_strerror@@DWSCALE_0.1' <<<"$syms" ||
	{ echo "dw_strerror not versioned DWSCALE_0.1"; exit 1; }
echo "$n public functions exported, all versioned"
