#!/usr/bin/env bash
# `npm test`: the whole suite.
#   as root (CI, `sudo bash .ci/run`): scripts/ci-matrix.sh: build and package, unit tests, every lab file
#     on Docker 20.10, then the sync and lifecycle lab suites on Docker 26.1, 28.5 and 28.5-nft;
#   otherwise: build, package and every test file; the lab and runtime suites say why they skip
#     (with CI=true they fail instead).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then exec bash scripts/ci-matrix.sh "$@"; fi
npm run build
npm run package
exec npx vitest run
