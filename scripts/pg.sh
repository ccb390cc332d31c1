#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A throwaway PostgreSQL server for tests and benchmarks: initialised in a temp dir, listening
# only on 127.0.0.1 (and a socket in the dir), run as a non-root user, stopped afterwards.
#   scripts/pg.sh start DIR [PORT]   prints the conninfo URI on stdout (last line)
#   scripts/pg.sh stop DIR
#   scripts/pg.sh uri DIR
# As root the server runs as the 'postgres' user (PostgreSQL refuses to run as root), so DIR and
# its parents must be traversable by that user.
set -euo pipefail
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|uri DIR [PORT]" >&2; exit 2; }
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bindir/initdb" ] || { echo "pg.sh: PostgreSQL server binaries not found (install postgresql)" >&2; exit 1; }

as_user() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

case "$cmd" in
start)
	port=${3:-$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
	mkdir -p "$dir"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		as_user "$bindir/initdb" -D "$dir/data" -U dwscale --auth=trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
			{ cat "$dir/initdb.log" >&2; exit 1; }
	fi
	echo "$port" >"$dir/port"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$dir/port"
	as_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
		-o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200" start >/dev/null ||
		{ cat "$dir/server.log" >&2; exit 1; }
	as_user "$bindir/createdb" -h 127.0.0.1 -p "$port" -U dwscale dwscale 2>/dev/null || true
	echo "postgresql://dwscale@127.0.0.1:$port/dwscale"
	;;
stop)
	[ -f "$dir/data/postmaster.pid" ] && as_user "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
	exit 0
	;;
uri)
	echo "postgresql://dwscale@127.0.0.1:$(cat "$dir/port")/dwscale"
	;;
*)
	echo "usage: $0 start|stop|uri DIR [PORT]" >&2; exit 2
	;;
esac
