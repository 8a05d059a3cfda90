#!/usr/bin/env bash
# Fetch newer Docker engines for the lab from other Debian suites, WITHOUT installing them:
#   scripts/fetch-docker.sh 26.1 28.5        (as root or not; after `npm ci`; needs a Debian mirror)
# Each VERSION maps to a suite (26.1: Debian 13 trixie, 28.5: Debian unstable sid). docker.io and
# containerd are fetched with `apt-get download` from the Debian mirror the machine's apt sources
# name (scripts/apt-sources.ts; EFW_DEBIAN_MIRROR overrides) through a private sources list, lists
# dir and cache (the machine's apt setup is never written), and unpacked with `dpkg -x` into
# $EFW_LAB_CACHE/docker-VERSION (default /var/tmp/efw-lab-cache). The lab puts
# its usr/sbin and usr/bin first on dockerd's PATH (test/lab/lab.ts, EFW_DOCKER=VERSION).
# The machine's runc stays in use: Debian 13's needs a newer glibc than Debian 12 has.
#
# Idempotent: a VERSION already unpacked is left alone (--refresh fetches again).
# The exact package versions found are written to docker-VERSION/VERSIONS and printed. A suite
# moves on: if it no longer carries VERSION, what it has now is taken, with a warning.
set -euo pipefail

CACHE="${EFW_LAB_CACHE:-/var/tmp/efw-lab-cache}"
KEYRING="${EFW_DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"
refresh=no
versions=()
for a in "$@"; do
  case "$a" in
    --refresh) refresh=yes ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) versions+=("$a") ;;
  esac
done
[ "${#versions[@]}" -gt 0 ] || { echo "usage: $0 [--refresh] VERSION... (known: 26.1 28.5)" >&2; exit 2; }

suite_of() {
  case "$1" in
    26.1) echo trixie ;;
    28.5) echo sid ;;
    *) echo "fetch-docker: no Debian suite known for Docker $1 (known: 26.1 = trixie, 28.5 = sid)" >&2; return 1 ;;
  esac
}

# The Debian mirror this machine's apt uses (sources.list, sources.list.d/*.list or *.sources), read once when needed.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MIRROR=
find_mirror() {
  [ -z "$MIRROR" ] || return 0
  [ -x "$ROOT/node_modules/.bin/tsx" ] || { echo "fetch-docker: $ROOT/node_modules/.bin/tsx is missing: run \`npm ci\` first" >&2; exit 1; }
  local m
  m=$("$ROOT/node_modules/.bin/tsx" "$ROOT/scripts/apt-sources.ts") || exit 1
  read -r MIRROR SECURITY_MIRROR <<< "$m"
  echo "fetch-docker: Debian mirror $MIRROR (security: $SECURITY_MIRROR), from this machine's apt sources"
}

mkdir -p "$CACHE"
exec 9>"$CACHE/.fetch-docker.lock"
flock 9 # two CI jobs or helpers fetching at once share one result

for ver in "${versions[@]}"; do
  suite=$(suite_of "$ver")
  dest="$CACHE/docker-$ver"
  if [ "$refresh" = no ] && [ -x "$dest/usr/sbin/dockerd" ] && [ -s "$dest/VERSIONS" ]; then
    echo "fetch-docker: $ver already in $dest: $(tr '\n' ' ' < "$dest/VERSIONS")"
    continue
  fi
  find_mirror
  apt_dir="$CACHE/apt-$suite"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
  {
    echo "deb [signed-by=$KEYRING] $MIRROR $suite main"
    # a stable suite's fixes land in -updates and -security
    if [ "$suite" != sid ]; then
      echo "deb [signed-by=$KEYRING] $MIRROR $suite-updates main"
      echo "deb [signed-by=$KEYRING] $SECURITY_MIRROR $suite-security main"
    fi
  } > "$apt_dir/sources.list"
  # Every apt path that could touch the machine's setup points into apt_dir; dpkg's status is only read.
  apt_opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=/dev/null
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o Debug::NoLocking=1
    -o APT::Sandbox::User=root -o Acquire::Languages=none -o APT::Get::List-Cleanup=0)
  echo "fetch-docker: $ver: apt-get update ($suite)"
  apt-get -qq "${apt_opts[@]}" update
  found=()
  for pkg in docker.io containerd; do
    cand=$(apt-cache "${apt_opts[@]}" policy "$pkg" | awk '/Candidate:/ {print $2}')
    [ -n "$cand" ] && [ "$cand" != "(none)" ] || { echo "fetch-docker: $suite has no $pkg" >&2; exit 1; }
    found+=("$pkg=$cand")
  done
  dver=${found[0]#docker.io=}
  case "$dver" in
    "$ver".*) ;;
    *) echo "fetch-docker: WARNING: $suite now carries docker.io $dver, not $ver: taking it (the lab reports the version it runs)" >&2 ;;
  esac
  tmp=$(mktemp -d "$CACHE/docker-$ver.tmp-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get -qq "${apt_opts[@]}" download "${found[@]}")
  mkdir "$tmp/root"
  for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$tmp/root"; done
  printf '%s\n' "${found[@]}" > "$tmp/root/VERSIONS"
  # fail here, not in the lab, if a binary cannot run on this machine (glibc)
  "$tmp/root/usr/sbin/dockerd" --version > /dev/null
  "$tmp/root/usr/bin/containerd" --version > /dev/null
  rm -rf "$dest"
  mv "$tmp/root" "$dest"
  rm -rf "$tmp"
  trap - EXIT
  echo "fetch-docker: $ver -> $dest: ${found[*]}"
done
