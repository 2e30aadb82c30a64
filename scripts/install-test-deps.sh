#!/usr/bin/env bash
# Installs, idempotently, what Berth's build, tests, benchmarks and demo need
# on a fresh Debian machine (run as root): Go, Docker Engine and Debian's
# registry as real components, busybox for a real tiny image, Node.js and
# Azurite for Azure Blob Storage, PostgreSQL and Chromium for the control
# endpoint. Installs nothing that is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
have dockerd || need_apt+=(docker.io)
have docker-registry || need_apt+=(docker-registry)
[ -x /bin/busybox ] || need_apt+=(busybox-static)
have node || need_apt+=(nodejs)
have npm || need_apt+=(npm)
have git || need_apt+=(git)
have make || need_apt+=(make)
have gcc || need_apt+=(gcc)
have curl || need_apt+=(curl)
# PostgreSQL for the control endpoint's scale-out store; Chromium for the
# web page's browser tests. Tests start their own instances of both.
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || need_apt+=(postgresql)
have chromium || need_apt+=(chromium)
# `make package` and its tests: wixl builds the MSI (its own package),
# msitools reads it back (msiinfo, msibuild), faketime pins wixl's clock so
# the MSI is reproducible, osslsigncode signs, lintian checks the .deb.
have wixl || need_apt+=(wixl)
have msiinfo || need_apt+=(msitools)
have faketime || need_apt+=(faketime)
have osslsigncode || need_apt+=(osslsigncode)
have lintian || need_apt+=(lintian)
have dpkg-deb || need_apt+=(dpkg)
export PATH="/usr/local/go/bin:$PATH"
go_version=1.26.8
go_ok() { command -v go >/dev/null 2>&1 && [ "$(go env GOVERSION 2>/dev/null)" = "go$go_version" ] || go version 2>/dev/null | grep -Eq 'go1\.(2[6-9]|[3-9][0-9])'; }
go_ok || have go || need_apt+=(golang-go)

if ((${#need_apt[@]})); then
  echo "install-test-deps: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Debian's Go is too old for this module: take the toolchain from the Go
# module proxy (golang.org/toolchain is an ordinary module there) with it.
if ! go_ok; then
  echo "install-test-deps: installing Go $go_version from the Go module proxy"
  tmp=$(mktemp -d)
  dir=$(GOMODCACHE="$tmp" GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json "golang.org/toolchain@v0.0.1-go$go_version.linux-amd64" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { echo "install-test-deps: could not download Go $go_version" >&2; exit 1; }
  rm -rf /usr/local/go
  cp -r "$dir" /usr/local/go
  chmod -R u+w "$tmp" /usr/local/go && rm -rf "$tmp"
  chmod +x /usr/local/go/bin/* /usr/local/go/pkg/tool/*/*
  go version
fi

# Debian's docker.io starts its own daemon through systemd where systemd
# runs; Berth's tests start their own dockerd instances and need none.

if [ -x scripts/install-azurite.sh ] || [ -f scripts/install-azurite.sh ]; then
  bash scripts/install-azurite.sh
fi
echo "install-test-deps: ready"
