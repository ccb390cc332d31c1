#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Database storage benchmark (bench_db): get and put of a 4 GiB object against a plain SQLite
# blob reader and psql's \lo_export, listing and count over 1M objects, and 64 concurrent gets of
# a 1 GiB object under the memory budget; on SQLite, and on a throwaway PostgreSQL started by
# scripts/pg.sh when its server binaries are installed (else SQLite only, and it says so). Run by
# bench/run.sh (make bench), which builds $DW_BENCH_BUILD; run alone it uses build-release the
# same way.
#   bench/db.sh [bench_db options: --size 4G --conc-size 1G --threads 64 --objects 1000000
#                --runs 5 --pg-runs 3]
# Sizes and runs can also come from the environment for quick runs, e.g.
#   DW_BENCH_DB_SIZE=256M DW_BENCH_DB_CONC_SIZE=64M DW_BENCH_DB_OBJECTS=20000 bench/db.sh
# (also DW_BENCH_DB_THREADS, DW_BENCH_DB_RUNS, DW_BENCH_DB_PG_RUNS). The default run takes about
# 15 minutes on 2 cores, most of it PostgreSQL moving 4 GiB objects.
# DW_BENCH_DB_PG=0 skips PostgreSQL. Everything (source file, databases, the PostgreSQL data
# directory; about 3.5x the object size on disk) lives in a temp dir on the real disk under
# $DW_BENCH_TMPDIR, else $TMPDIR, else /var/tmp, and is removed at the end.
set -euo pipefail
top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
build=${DW_BENCH_BUILD:-$top/build-release}
. "$top/bench/build.bash"
dw_bench_build bench/bench_db
base=${DW_BENCH_TMPDIR:-${TMPDIR:-/var/tmp}}
dir=$(mktemp -d "$base/dwscale-bench-db.XXXXXX")
# As root the PostgreSQL server runs as 'postgres', which must reach its data directory.
chmod 755 "$dir"
pg_started=0
cleanup() {
	if [ "$pg_started" = 1 ]; then
		"$top/scripts/pg.sh" stop "$dir/pg" || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pgargs=()
if [ "${DW_BENCH_DB_PG:-1}" != 0 ] && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
	uri=$("$top/scripts/pg.sh" start "$dir/pg" | tail -1)
	pg_started=1
	bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
	# A second database, so the listing fixture holds exactly the requested number of objects.
	psql=$(command -v psql || echo "$bindir/psql")
	"$psql" -X -q -d "$uri" -c "CREATE DATABASE dwscale_list" >/dev/null
	pgargs=(--pg "$uri" --pg-list "${uri%/*}/dwscale_list" --psql "$psql")
	echo "db.sh: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') at $uri (fsync on)"
else
	echo "db.sh: PostgreSQL not measured (DW_BENCH_DB_PG=0 or no server binaries installed)"
fi
echo "db.sh: files in $dir"
"$build/bench/bench_db" --dir "$dir" "${pgargs[@]}" "$@"
