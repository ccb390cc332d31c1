#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install the Debian packages dwscale needs to build, test and benchmark.
# Idempotent: installs only what is missing and prints each package it installs.
# Usage: scripts/install-deps.sh [--bench]   (--bench adds the benchmark peers)
set -euo pipefail

need=(
	build-essential meson ninja-build pkg-config clang llvm libclang-rt-14-dev
	libsqlite3-dev libpq-dev liburing-dev libzstd-dev libssl-dev
	libmicrohttpd-dev libcjson-dev libinih-dev libxxhash-dev libcmocka-dev
	python3 python3-pytest postgresql sqlite3 curl prometheus
)
if [ "${1:-}" = "--bench" ]; then
	need+=(fio restic borgbackup serf time)
fi

missing=()
for p in "${need[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all ${#need[@]} packages present"
	exit 0
fi

echo "install-deps: installing: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo"
	else
		echo "install-deps: error: need root (or sudo) to install: ${missing[*]}" >&2
		exit 1
	fi
fi
export DEBIAN_FRONTEND=noninteractive
# A stale or empty package list makes apt-get install fail; refresh it once.
if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; then
	echo "install-deps: refreshing package lists" >&2
	$SUDO apt-get update -q || { echo "install-deps: error: apt-get update failed (no network to the Debian archive?)" >&2; exit 1; }
	if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; then
		echo "install-deps: error: could not install: ${missing[*]}" >&2
		exit 1
	fi
fi
echo "install-deps: done"
