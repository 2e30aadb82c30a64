#!/usr/bin/env bash
# Installs, idempotently, what Berth's build, tests, benchmarks and demo need
# on a fresh Debian machine (run as root): Go, Docker Engine and Debian's
# registry as real components, busybox for a real tiny image, Node.js and
# Azurite for Azure Blob Storage. Installs nothing that is already there.
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
have go || [ -x /usr/local/go/bin/go ] || need_apt+=(golang-go)

if ((${#need_apt[@]})); then
  echo "install-test-deps: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Debian's docker.io starts its own daemon through systemd where systemd
# runs; Berth's tests start their own dockerd instances and need none.

if [ -x scripts/install-azurite.sh ] || [ -f scripts/install-azurite.sh ]; then
  bash scripts/install-azurite.sh
fi
echo "install-test-deps: ready"
