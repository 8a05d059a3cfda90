#!/usr/bin/env bash
# The test matrix .ci/run runs (as root; Debian 12 with scripts/install-deps.sh done):
#   1. the whole suite (unit + every lab file) on Docker 20.10, the machine's own;
#   2. the sync, lifecycle and DNS gate lab suites on each newer engine (default: 26.1 28.5 28.5-nft).
#
#   scripts/ci-matrix.sh                      # everything
#   scripts/ci-matrix.sh --skip-full 28.5     # only the matrix part, only on 28.5
#   EFW_CI_DOCKER="26.1" scripts/ci-matrix.sh # engines for step 2 from the environment
#
# Every lab run takes the machine-wide lab lock (/var/tmp/efw-labrun.lock) for itself, so other
# lab users interleave between runs; set EFW_LABRUN_LOCKED=1 if you already hold it. Each step
# goes on after a failure; the summary at the end lists steps, times and failed tests, and the
# exit status is non-zero if anything failed. Logs: $EFW_MATRIX_LOGS (default a fresh dir under /var/tmp).
set -uo pipefail
cd "$(dirname "$0")/.."

full=yes
versions=()
for a in "$@"; do
  case "$a" in
    --skip-full) full=no ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    20.10 | 26.1 | 28.5 | 28.5-nft) versions+=("$a") ;;
    *) echo "ci-matrix: unknown argument $a (engines: 20.10 26.1 28.5 28.5-nft)" >&2; exit 2 ;;
  esac
done
if [ "${#versions[@]}" -eq 0 ]; then read -r -a versions <<< "${EFW_CI_DOCKER-26.1 28.5 28.5-nft}"; fi
MATRIX_SUITES=(test/lab/sync.test.ts test/lab/lifecycle.test.ts test/lab/gate.test.ts)
LOCK=/var/tmp/efw-labrun.lock
logs="${EFW_MATRIX_LOGS:-$(mktemp -d /var/tmp/efw-ci-matrix-XXXXXX)}"
mkdir -p "$logs"

# the engines step 2 needs (26.1 and 28.5 binaries; 28.5-nft is 28.5 with another backend)
fetch=()
for v in "${versions[@]}"; do
  case "$v" in 26.1 | 28.5) fetch+=("$v") ;; 28.5-nft) fetch+=(28.5) ;; esac
done
if [ "${#fetch[@]}" -gt 0 ]; then bash scripts/fetch-docker.sh "${fetch[@]}" || exit 1; fi

summary=()
failed=0
# step NAME LOCK(yes|no) CMD...: run, time, keep the log, note failures
step() {
  local name=$1 lock=$2
  shift 2
  local log="$logs/$(echo "$name" | tr ' /' '__').log" t0 rc started="$logs/.started"
  echo "=== ci-matrix: $name"
  t0=$(date +%s)
  echo "$t0" > "$started"
  if [ "$lock" = yes ] && [ -z "${EFW_LABRUN_LOCKED:-}" ]; then
    # note when the lock was granted: time spent waiting for other lab users is not the suite's
    flock "$LOCK" bash -c 'date +%s > "$0"; exec "$@"' "$started" "$@" 2>&1 | tee "$log"
  else
    "$@" 2>&1 | tee "$log"
  fi
  rc=${PIPESTATUS[0]}
  local t1 waited secs
  t1=$(date +%s)
  waited=$(($(cat "$started") - t0))
  secs="$((t1 - t0 - waited))s"
  if [ "$waited" -gt 0 ]; then secs="$secs (+${waited}s waiting for the lab lock)"; fi
  local counts
  counts=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^ +Tests +' | tail -1 | sed -E 's/^ +Tests +//')
  if [ "$rc" -eq 0 ]; then
    summary+=("PASS  $name: $secs${counts:+, $counts}")
  else
    failed=1
    summary+=("FAIL  $name: $secs, ${counts:-exit $rc}")
    # vitest's " FAIL  project  file > describe > test" lines name each failed test
    while IFS= read -r l; do summary+=("        $l"); done < <(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^ FAIL ' | sed -E 's/^ FAIL +//' | sort -u)
  fi
}

t_all=$(date +%s)
step "build" no npm run build
step "package" no npm run package
if [ "$full" = yes ]; then
  step "unit" no npx vitest run --project unit
  step "pkg (bundle on node 18/20/22, .deb, npm package)" no npx vitest run --project pkg
  step "lab, all files, Docker 20.10" yes env EFW_DOCKER=20.10 npx vitest run --project lab
fi
for v in "${versions[@]}"; do
  step "lab sync+lifecycle, Docker $v" yes env EFW_DOCKER="$v" npx vitest run --project lab "${MATRIX_SUITES[@]}"
done

echo
echo "=== ci-matrix summary ($(($(date +%s) - t_all)) s; logs in $logs)"
printf '%s\n' "${summary[@]}"
exit $failed
