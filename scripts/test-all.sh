#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs every test of dwscale and ends with one line "N passed, N failed".
#   phases: build, unit (cmocka via meson test, incl. fuzz corpus replay), system (pytest against
#   the built binary), asan (unit tests again under ASan+UBSan). --only PHASE runs one phase
#   (asan, tsan, unit, system). Exit status is non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MESON_ARGS=${MESON_ARGS:-}
ONLY=""
if [ "${1:-}" = "--only" ]; then ONLY=${2:-}; fi

passed=0
failed=0
skipped=0
failures=()
t0=$(date +%s)

phase() { echo; echo "==== $* ($(($(date +%s) - t0)) s)"; }

# meson_counts BUILDDIR LABEL: add the results of the last `meson test` in BUILDDIR.
meson_counts() {
	local log="$1/meson-logs/testlog.json" out
	if [ ! -f "$log" ]; then
		failed=$((failed + 1)); failures+=("$2: no test log"); return
	fi
	out=$(/usr/bin/python3 - "$log" <<'PY'
import json, sys
p = f = s = 0
names = []
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line)
    res = r.get("result", "")
    if res in ("OK", "EXPECTEDFAIL"):
        p += 1
    elif res == "SKIP":
        s += 1
    else:
        f += 1
        names.append(r.get("name", "?"))
print(p, f, s, " ".join(names))
PY
)
	set -- $out "$2"
	passed=$((passed + $1)); failed=$((failed + $2)); skipped=$((skipped + $3))
	shift 3
	local label="${@: -1}"
	if [ $# -gt 1 ]; then
		failures+=("$label: ${*:1:$#-1}")
	fi
}

setup_build() { # DIR ARGS...
	local dir=$1; shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" $MESON_ARGS || return 1
	else
		meson setup --reconfigure "$dir" "$@" $MESON_ARGS >/dev/null || return 1
	fi
	ninja -C "$dir"
}

run_meson_tests() { # DIR LABEL [extra meson test args]
	local dir=$1 label=$2; shift 2
	rm -f "$dir/meson-logs/testlog.json"
	meson test -C "$dir" --print-errorlogs --num-processes 2 "$@"
	meson_counts "$dir" "$label"
}

if [ -z "$ONLY" ] || [ "$ONLY" = unit ] || [ "$ONLY" = system ]; then
	phase "build"
	if ! setup_build "$BUILD"; then
		echo "build failed"
		echo "0 passed, 1 failed"
		exit 1
	fi
fi

# A throwaway PostgreSQL server for the PostgreSQL strategy's tests (scripts/pg.sh), stopped on
# exit. Without it those tests would skip, so failing to start it is a failure.
start_pg() {
	[ -n "${DW_TEST_PG_URI:-}" ] && return 0
	pgdir=$(mktemp -d /tmp/dwscale-pg.XXXXXX)
	chmod 755 "$pgdir"
	trap 'scripts/pg.sh stop "$pgdir/pg" >/dev/null 2>&1; rm -rf "$pgdir"' EXIT
	if DW_TEST_PG_URI=$(scripts/pg.sh start "$pgdir/pg"); then
		export DW_TEST_PG_URI
		echo "PostgreSQL for tests: $DW_TEST_PG_URI"
	else
		failed=$((failed + 1)); failures+=("postgresql: test server did not start")
	fi
}
if [ "$ONLY" != system ]; then
	phase "start PostgreSQL"
	start_pg
fi

if [ -z "$ONLY" ] || [ "$ONLY" = unit ]; then
	phase "unit tests and fuzz corpus replay"
	run_meson_tests "$BUILD" unit
fi

if [ -z "$ONLY" ] || [ "$ONLY" = system ]; then
	phase "system tests (pytest)"
	xml="$BUILD/pytest-results.xml"
	rm -f "$xml"
	DWSCALE_BIN="$PWD/$BUILD/dwscale" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
		--junitxml="$xml" tests/system
	rc=$?
	if [ -f "$xml" ]; then
		out=$(/usr/bin/python3 - "$xml" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = f = e = s = 0
for su in suites:
    t += int(su.get("tests", 0)); f += int(su.get("failures", 0))
    e += int(su.get("errors", 0)); s += int(su.get("skipped", 0))
print(t - f - e - s, f + e, s)
PY
)
		set -- $out
		passed=$((passed + $1)); failed=$((failed + $2)); skipped=$((skipped + $3))
		[ "$2" -gt 0 ] && failures+=("system: $2 pytest failures")
		# pytest exit 5 = no tests collected: that is a failure of the suite, not a pass.
		if [ $rc -ne 0 ] && [ "$2" -eq 0 ]; then failed=$((failed + 1)); failures+=("system: pytest exit $rc"); fi
	else
		failed=$((failed + 1)); failures+=("system: pytest produced no results (exit $rc)")
	fi
fi

if [ -z "$ONLY" ] || [ "$ONLY" = asan ]; then
	phase "unit tests under ASan+UBSan"
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	if setup_build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbench=false; then
		run_meson_tests build-asan asan
	else
		failed=$((failed + 1)); failures+=("asan: build failed")
	fi
fi

if [ "$ONLY" = tsan ]; then
	phase "unit tests under TSan"
	export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
	if setup_build build-tsan -Db_sanitize=thread -Db_lundef=false -Dbench=false; then
		run_meson_tests build-tsan tsan --suite unit
	else
		failed=$((failed + 1)); failures+=("tsan: build failed")
	fi
fi

echo
echo "==== done in $(($(date +%s) - t0)) s"
for f in "${failures[@]}"; do echo "FAILED: $f"; done
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
