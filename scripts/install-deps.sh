#!/usr/bin/env bash
# Install the system packages egressfw's lab tests, demo and benchmarks need (Debian/Ubuntu, as root).
# No package may start a service on the machine itself: dockerd would write the host's own iptables.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=(iptables ipset nftables conntrack ufw docker.io docker-compose dnsmasq-base debootstrap busybox-static openssl curl iproute2 util-linux
  time strace gcc libc6-dev  # npm run bench (peak RSS, spawn counts, its C load generator)
  dnsperf                    # npm run bench: the DNS gate beside dnsmasq (Debian 12: dnsperf 2.10)
  lintian)                   # test/pkg/package.test.ts: Debian's package checker on the .deb (it starts no service)
# promtool (test/pkg/metrics.test.ts) comes from Debian 12's prometheus package, unpacked into the lab cache by the
# test itself (test/support/node-runtimes.ts): installing that package would start a Prometheus server.
# npm run package needs only dpkg-deb (the dpkg package: always there). test/unit/units.test.ts rates the units
# with systemd-analyze: install systemd only where it is missing (containers); policy-rc.d below keeps it from
# starting anything, and without systemd as PID 1 its scripts start nothing either.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ "${#missing[@]}" -eq 0 ] && exit 0
created_policy=no
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  created_policy=yes
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
if [ "$created_policy" = yes ]; then rm -f /usr/sbin/policy-rc.d; fi
