#!/usr/bin/env bash
# Installs dnsmasq for the DNS discovery tests (`npm run setup`: scripts/setup.sh runs it after install-consul.sh).
#
# Why this exists: test/discovery/dns-dnsmasq.test.ts runs a real dnsmasq on loopback to serve A and SRV
# records that change while calls flow. Machines and CI images rarely have it, and installing packages
# system-wide is not ours to do, so this script fetches Debian's `dnsmasq-base` package with apt-get using a
# private sources list and private apt state (the machine's own apt setup is never touched), unpacks it with
# `dpkg -x` into the git-ignored folder .tools/dnsmasq/, and then unpacks, from the same suite, only the
# shared libraries `ldd` reports missing on this machine (libnftables1, libnetfilter-conntrack3, ... on a
# slim image). The tests run it with LD_LIBRARY_PATH pointing at those libraries (test/support/dnsmasq.ts).
#
# Idempotent: does nothing when $DNSMASQ_BIN points to a working binary, when `dnsmasq` is on PATH, or when
# .tools/dnsmasq/usr/sbin/dnsmasq already runs. Needs no input (works with CI=true, as root or not).
#
# The archive URI and suite are read from the machine's deb822 sources file (the stanza that serves the
# main Debian archive), so no registry host name is written here, and the libraries match the machine's
# own libc.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.tools/dnsmasq"
LOCAL_BIN="$DEST/usr/sbin/dnsmasq"
LIBS="$DEST/lib"
SOURCES_DIR="${DNSMASQ_APT_SOURCES_DIR:-/etc/apt/sources.list.d}"

works() {
  [ -n "${1:-}" ] && [ -x "$1" ] && LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$1" --version >/dev/null 2>&1
}

if works "${DNSMASQ_BIN:-}"; then
  echo "dnsmasq: using DNSMASQ_BIN=$DNSMASQ_BIN"
  exit 0
fi
if command -v dnsmasq >/dev/null 2>&1 && works "$(command -v dnsmasq)"; then
  echo "dnsmasq: using $(command -v dnsmasq) from PATH"
  exit 0
fi
if works "$LOCAL_BIN"; then
  echo "dnsmasq: already installed at $LOCAL_BIN ($(LD_LIBRARY_PATH="$LIBS" "$LOCAL_BIN" --version | head -n1))"
  exit 0
fi

for tool in apt-get apt-cache dpkg ldd; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "dnsmasq: $tool not found; install dnsmasq yourself and set DNSMASQ_BIN" >&2
    exit 1
  }
done

# The stanza of a deb822 .sources file that serves the main Debian archive: type deb, component main, a
# suite without a -security/-updates/-backports suffix. Prints "URI<TAB>suite<TAB>Signed-By".
find_archive() {
  awk '
    function flush() {
      if (uri != "" && types ~ /(^| )deb( |$)/ && comps ~ /(^| )main( |$)/ && suite != "" && uri !~ /security/) {
        print uri "\t" suite "\t" signed; found = 1; exit
      }
      uri = ""; types = ""; comps = ""; signed = ""; suite = ""
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
        for (i = 1; i <= n; i++) if (suite == "" && s[i] != "" && s[i] !~ /-/ && s[i] !~ /\//) suite = s[i]
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
  echo "dnsmasq: no deb822 stanza for the main Debian archive in $SOURCES_DIR/*.sources;" >&2
  echo "         install dnsmasq yourself and set DNSMASQ_BIN=/path/to/dnsmasq" >&2
  exit 1
fi
IFS=$'\t' read -r URI SUITE SIGNED_BY <<<"$ARCHIVE"
SUITE="${DNSMASQ_DEBIAN_SUITE:-$SUITE}"

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
} >"$TMP/dnsmasq.sources"

APT_OPTS=(
  -q
  -o "Dir::Etc::sourcelist=$TMP/dnsmasq.sources"
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

echo "dnsmasq: fetching the $SUITE package index (private apt state in $TMP)"
DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" update >"$TMP/update.log" 2>&1 || {
  cat "$TMP/update.log" >&2
  echo "dnsmasq: apt-get update failed" >&2
  exit 1
}

# dnsmasq-base and every library package it depends on, recursively (libc6 and the like are downloaded but
# only unpacked when ldd says a library is missing, which on a Debian machine of the same suite they never are).
DEPS="$(apt-cache "${APT_OPTS[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
  --no-breaks --no-replaces --no-enhances dnsmasq-base 2>/dev/null |
  awk '/^[a-z0-9]/ && $0 !~ /[<>:]/ { print $1 }' | sort -u)"
PKGS=()
for p in $DEPS; do
  case "$p" in dnsmasq-base | lib*) PKGS+=("$p") ;; esac
done
echo "dnsmasq: downloading dnsmasq-base and ${#PKGS[@]} candidate library package(s)"
(cd "$TMP/download" && DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" download "${PKGS[@]}" >"$TMP/download.log" 2>&1) || {
  cat "$TMP/download.log" >&2
  echo "dnsmasq: apt-get download failed" >&2
  exit 1
}

rm -rf "$DEST"
mkdir -p "$DEST" "$LIBS" "$TMP/unpacked"
dpkg -x "$(ls "$TMP"/download/dnsmasq-base_*.deb | head -n1)" "$DEST"

# Unpack, one package at a time, the library that ldd reports missing, until nothing is missing.
for _ in $(seq 1 30); do
  MISSING="$(LD_LIBRARY_PATH="$LIBS" ldd "$LOCAL_BIN" | awk '/not found/ { print $1 }' | head -n1)"
  [ -z "$MISSING" ] && break
  FOUND=""
  for deb in "$TMP"/download/*.deb; do
    # The sixth field of a listing line is the path (a symlink, as sonames are shipped, adds "-> target").
    if dpkg -c "$deb" | awk -v m="/$MISSING" '{ if (substr($6, length($6) - length(m) + 1) == m) f = 1 } END { exit !f }'; then
      FOUND="$deb"
      break
    fi
  done
  if [ -z "$FOUND" ]; then
    echo "dnsmasq: $MISSING is missing and no downloaded package provides it" >&2
    exit 1
  fi
  echo "dnsmasq: unpacking $(basename "$FOUND") for $MISSING"
  rm -rf "$TMP/unpacked" && mkdir -p "$TMP/unpacked"
  dpkg -x "$FOUND" "$TMP/unpacked"
  find "$TMP/unpacked" \( -type f -o -type l \) -name '*.so*' -exec cp -a {} "$LIBS/" \;
done

if ! works "$LOCAL_BIN"; then
  echo "dnsmasq: unpacked dnsmasq-base but $LOCAL_BIN does not run:" >&2
  LD_LIBRARY_PATH="$LIBS" ldd "$LOCAL_BIN" >&2 || true
  exit 1
fi
echo "dnsmasq: installed $LOCAL_BIN ($(LD_LIBRARY_PATH="$LIBS" "$LOCAL_BIN" --version | head -n1))"
echo "dnsmasq: the tests find it there (with LD_LIBRARY_PATH=$LIBS); or export DNSMASQ_BIN"
