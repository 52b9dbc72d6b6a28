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
# The archive URI is read from the machine's deb822 sources file (the first `URIs:` value of the stanza
# that serves the main Debian archive), so no registry host name is written here.
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

command -v apt-get >/dev/null 2>&1 || { echo "consul: apt-get not found; install Consul yourself and set CONSUL_BIN" >&2; exit 1; }
command -v dpkg >/dev/null 2>&1 || { echo "consul: dpkg not found; install Consul yourself and set CONSUL_BIN" >&2; exit 1; }

# Find the stanza of a deb822 .sources file that serves the main Debian archive: type deb, component
# main, a suite without a -security/-updates/-backports suffix. Prints "URI<TAB>Signed-By".
find_archive() {
  awk '
    function flush() {
      if (uri != "" && types ~ /(^| )deb( |$)/ && comps ~ /(^| )main( |$)/ && plain && uri !~ /security/) {
        print uri "\t" signed; found = 1; exit
      }
      uri = ""; types = ""; comps = ""; signed = ""; plain = 0
    }
    BEGIN { IGNORECASE = 1 }
    /^[ \t]*#/ { next }
    /^[ \t]*$/ { flush(); next }
    {
      key = $1; sub(/:$/, "", key); key = tolower(key)
      val = $0; sub(/^[^:]*:[ \t]*/, "", val)
      if (key == "types") types = val
      else if (key == "uris") { split(val, u, /[ \t]+/); uri = u[1] }
      else if (key == "components") comps = val
      else if (key == "signed-by") signed = val
      else if (key == "suites") {
        n = split(val, s, /[ \t]+/)
        for (i = 1; i <= n; i++) if (s[i] != "" && s[i] !~ /-/ && s[i] !~ /\//) plain = 1
      }
    }
    END { if (!found) flush() }
  ' "$1"
}

ARCHIVE=""
for f in "$SOURCES_DIR"/*.sources; do
  [ -f "$f" ] || continue
  ARCHIVE="$(find_archive "$f")"
  [ -n "$ARCHIVE" ] && break
done
if [ -z "$ARCHIVE" ]; then
  echo "consul: no deb822 stanza for the main Debian archive in $SOURCES_DIR/*.sources;" >&2
  echo "        install Consul yourself and set CONSUL_BIN=/path/to/consul" >&2
  exit 1
fi
URI="${ARCHIVE%%$'\t'*}"
SIGNED_BY="${ARCHIVE#*$'\t'}"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
chmod 755 "$TMP"
mkdir -p "$TMP/lists/partial" "$TMP/cache/archives/partial" "$TMP/download"
{
  echo "Types: deb"
  echo "URIs: $URI"
  echo "Suites: $SUITE"
  echo "Components: main"
  [ -n "$SIGNED_BY" ] && echo "Signed-By: $SIGNED_BY"
} >"$TMP/consul.sources"

APT_OPTS=(
  -q
  -o "Dir::Etc::sourcelist=$TMP/consul.sources"
  -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$TMP/lists"
  -o "Dir::Cache=$TMP/cache"
  -o "Dir::Cache::pkgcache="
  -o "Dir::Cache::srcpkgcache="
  -o "APT::Get::List-Cleanup=0"
  -o "Debug::NoLocking=1"
)
# apt drops to the _apt user to download; our private folders belong to root, so stay root for them.
if [ "$(id -u)" = 0 ]; then APT_OPTS+=(-o "APT::Sandbox::User=root"); fi

echo "consul: fetching the $SUITE package index (private apt state in $TMP)"
DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" update >"$TMP/update.log" 2>&1 || {
  cat "$TMP/update.log" >&2
  echo "consul: apt-get update failed" >&2
  exit 1
}
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
