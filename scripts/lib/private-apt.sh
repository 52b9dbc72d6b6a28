# Private apt state for fetching one Debian package (and its libraries) without touching the machine's own
# apt setup: sourced by scripts/install-consul.sh and scripts/install-dnsmasq.sh.
#
# The archive URI is read from the machine's deb822 sources file (the stanza that serves the main Debian
# archive), so no registry host name is written in this repository. After `private_apt_init NAME SUITE`,
# "${APT_OPTS[@]}" points apt-get and apt-cache at a sources list with that suite and at private lists and
# caches under $TMP (removed on exit); `$TMP/download` is the download folder.

# The stanza of a deb822 .sources file that serves the main Debian archive: type deb, component main, a
# suite without a -security/-updates/-backports suffix. Prints "URI<TAB>suite<TAB>Signed-By".
private_apt_find_archive() {
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

# private_apt_init NAME SOURCES_DIR [SUITE]: finds the archive, writes the private sources list, sets
# APT_OPTS, TMP (and an EXIT trap that removes it) and ARCHIVE_SUITE, and fetches the package index. SUITE
# defaults to the machine's own suite. Exits with a message naming NAME when anything is missing.
private_apt_init() {
  local name="$1" sources_dir="$2" want_suite="${3:-}" archive="" f uri suite signed
  for tool in apt-get apt-cache dpkg; do
    command -v "$tool" >/dev/null 2>&1 || {
      echo "$name: $tool not found; install $name yourself" >&2
      exit 1
    }
  done
  for f in "$sources_dir"/*.sources; do
    [ -f "$f" ] || continue
    archive="$(private_apt_find_archive "$f")"
    [ -n "$archive" ] && break
  done
  if [ -z "$archive" ]; then
    echo "$name: no deb822 stanza for the main Debian archive in $sources_dir/*.sources; install $name yourself" >&2
    exit 1
  fi
  IFS=$'\t' read -r uri suite signed <<<"$archive"
  ARCHIVE_SUITE="${want_suite:-$suite}"

  TMP="$(mktemp -d)"
  # shellcheck disable=SC2064 # expand TMP now
  trap "rm -rf '$TMP'" EXIT
  chmod 755 "$TMP"
  mkdir -p "$TMP/lists/partial" "$TMP/cache/archives/partial" "$TMP/download"
  {
    echo "Types: deb"
    echo "URIs: $uri"
    echo "Suites: $ARCHIVE_SUITE"
    echo "Components: main"
    [ -n "$signed" ] && echo "Signed-By: $signed"
  } >"$TMP/private.sources"

  APT_OPTS=(
    -q
    -o "Dir::Etc::sourcelist=$TMP/private.sources"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$TMP/lists"
    -o "Dir::Cache=$TMP/cache"
    -o "Dir::Cache::pkgcache="
    -o "Dir::Cache::srcpkgcache="
    -o "APT::Get::List-Cleanup=0"
    -o "Debug::NoLocking=1"
  )
  # apt drops to the _apt user to download; the private folders belong to root, so stay root for them.
  if [ "$(id -u)" = 0 ]; then APT_OPTS+=(-o "APT::Sandbox::User=root"); fi

  echo "$name: fetching the $ARCHIVE_SUITE package index (private apt state in $TMP)"
  DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" update >"$TMP/update.log" 2>&1 || {
    cat "$TMP/update.log" >&2
    echo "$name: apt-get update failed" >&2
    exit 1
  }
}
