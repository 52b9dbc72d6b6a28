#!/usr/bin/env bash
# Installs a Consul binary for the test suite (npm run consul:install; .ci/run calls it before the tests).
#
# Why this exists: the Consul tests run a real agent (`consul agent -dev`), and Consul is not in Debian
# bookworm. Debian bullseye ships consul 1.8.7, so when no Consul is available this script fetches that
# package with apt-get using a private sources list and private apt state (the machine's own apt setup is
# never touched), and unpacks it with `dpkg -x` into the git-ignored folder .consul/ at the repo root.
#
# Idempotent: does nothing when $CONSUL_BIN points to a working binary, when `consul` is on PATH, or when
# .consul/usr/bin/consul already runs. Needs no input (works with CI=true, as root or not).
#
# The archive URI is read from the machine's deb822 sources file (scripts/lib/private-apt.sh), so no registry
# host name is written here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.consul"
LOCAL_BIN="$DEST/usr/bin/consul"
SUITE="${CONSUL_DEBIAN_SUITE:-bullseye}"
SOURCES_DIR="${CONSUL_APT_SOURCES_DIR:-/etc/apt/sources.list.d}"

works() { [ -n "${1:-}" ] && [ -x "$1" ] && "$1" version >/dev/null 2>&1; }

if works "${CONSUL_BIN:-}"; then
  echo "consul: using CONSUL_BIN=$CONSUL_BIN ($("$CONSUL_BIN" version | head -n1))"
  exit 0
fi
if command -v consul >/dev/null 2>&1 && works "$(command -v consul)"; then
  echo "consul: using $(command -v consul) from PATH ($(consul version | head -n1))"
  exit 0
fi
if works "$LOCAL_BIN"; then
  echo "consul: already installed at $LOCAL_BIN ($("$LOCAL_BIN" version | head -n1))"
  exit 0
fi

# shellcheck source=lib/private-apt.sh
. "$ROOT/scripts/lib/private-apt.sh"
private_apt_init consul "$SOURCES_DIR" "$SUITE"

echo "consul: downloading the consul package ($(apt-cache "${APT_OPTS[@]}" policy consul 2>/dev/null | awk '/Candidate:/ { print $2 }'))"
(cd "$TMP/download" && DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" download consul)
DEB="$(ls "$TMP"/download/consul_*.deb | head -n1)"
mkdir -p "$DEST"
dpkg -x "$DEB" "$DEST"
if ! works "$LOCAL_BIN"; then
  echo "consul: unpacked $DEB but $LOCAL_BIN does not run" >&2
  exit 1
fi
echo "consul: installed $LOCAL_BIN ($("$LOCAL_BIN" version | head -n1))"
echo "consul: the test harness finds it there; or export CONSUL_BIN=$LOCAL_BIN"
