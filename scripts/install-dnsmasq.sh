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

command -v ldd >/dev/null 2>&1 || {
  echo "dnsmasq: ldd not found; install dnsmasq yourself and set DNSMASQ_BIN" >&2
  exit 1
}
# shellcheck source=lib/private-apt.sh
. "$ROOT/scripts/lib/private-apt.sh"
private_apt_init dnsmasq "$SOURCES_DIR" "${DNSMASQ_DEBIAN_SUITE:-}"

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
