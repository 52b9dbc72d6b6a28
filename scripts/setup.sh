#!/usr/bin/env bash
# `npm run setup`: installs the npm packages, a Consul agent and dnsmasq for the tests.
#
# meshfetch supports Node >= 22.19 (package.json engines). The project pins Node 24 as a devDependency
# (the npm `node` package), so npm scripts (tsc, eslint, vitest) run on it whatever the system Node is. The
# install itself runs on the system Node when that is supported, and otherwise on Node 24 fetched by npx
# from the npm registry, so an older system Node (such as Debian's or a CI image's Node 20) installs without
# engine warnings.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

supported() {
  node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a===22&&b>=19)?0:1)'
}

if supported; then
  npm ci --no-audit --no-fund
else
  echo "setup: system Node $(node --version) is older than 22.19; installing with Node 24 from the npm registry"
  npx -y -p node@24 -- npm ci --no-audit --no-fund
fi
bash scripts/install-consul.sh
bash scripts/install-dnsmasq.sh
