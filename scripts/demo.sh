#!/usr/bin/env bash
# One command, as root on a fresh Debian/Ubuntu machine: install what the lab needs, build egressfw,
# then show the Docker bypass of ufw and egressfw closing it, all inside throwaway network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "the demo builds network namespaces and runs dockerd inside them: run it as root (sudo $0)" >&2; exit 1; }
bash scripts/install-deps.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run build --silent
exec node_modules/.bin/tsx scripts/demo.ts
