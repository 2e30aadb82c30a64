#!/usr/bin/env bash
# Install Azurite (the Azure Storage emulator) for Berth's tests and demo.
#
# Idempotent: installs Node.js and npm from Debian's packages when they are
# missing, then installs the version pinned in tools/azurite/package.json
# (from package-lock.json when present) into tools/azurite/node_modules.
# internal/testenv/azurite.Start runs azurite-blob from there (node_modules/.bin/azurite-blob).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/tools/azurite"

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "install-azurite: installing nodejs and npm from apt" >&2
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi

bin="$dir/node_modules/.bin/azurite-blob"
want="$(node -p "require('$dir/package.json').dependencies.azurite")"
have=""
if [ -f "$dir/node_modules/azurite/package.json" ]; then
	have="$(node -p "require('$dir/node_modules/azurite/package.json').version")"
fi
if [ -x "$bin" ] && [ "$have" = "$want" ]; then
	echo "install-azurite: azurite $have already installed in $dir" >&2
	exit 0
fi

cd "$dir"
if [ -f package-lock.json ]; then
	npm ci --no-audit --no-fund --loglevel=error
else
	npm install --no-audit --no-fund --loglevel=error
fi
echo "install-azurite: azurite $(node -p "require('./node_modules/azurite/package.json').version") installed in $dir" >&2
