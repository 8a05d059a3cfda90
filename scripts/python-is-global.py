#!/usr/bin/env python3
"""Write test/unit/golden/python-is-global.json: Python's ipaddress is_global for a table of
sample addresses, which test/unit/rebinding.test.ts compares with egressfw's rebinding guard
(src/net/ip.ts). Python >= 3.13 (or 3.12.4): older versions predate the fix that made
ipaddress follow IANA's special-purpose registries (gh-113171), and their verdicts differ.

    python3.13 scripts/python-is-global.py > test/unit/golden/python-is-global.json
"""
import ipaddress
import json
import sys

if sys.version_info < (3, 12, 4):
    sys.exit(f"Python {sys.version.split()[0]} predates gh-113171; use 3.13 or later")

# Every block of both IANA special-purpose registries (first and last address, and the
# addresses just outside), the other blocks egressfw refuses, and ordinary public addresses.
BLOCKS = [
    # IPv4
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.0.0/29", "192.0.0.8/32", "192.0.0.9/32", "192.0.0.10/32", "192.0.0.170/31",
    "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",
    "240.0.0.0/4", "255.255.255.255/32", "168.63.129.16/32",
    # IPv6
    "::/128", "::1/128", "::/96", "::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48",
    "100::/64", "100:0:0:1::/64", "2001::/23", "2001::/32", "2001:1::1/128", "2001:1::2/128",
    "2001:1::3/128", "2001:2::/48", "2001:3::/32", "2001:4:112::/48", "2001:10::/28", "2001:20::/28",
    "2001:30::/28", "2001:db8::/32", "2002::/16", "2620:4f:8000::/48", "3fff::/20", "5f00::/16",
    "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
]
EXTRA = [
    "8.8.8.8", "1.1.1.1", "93.184.216.34", "100.100.100.200", "169.254.169.254",
    "2606:4700:4700::1111", "2001:4860:4860::8888", "2a00:1450:4001:80b::200e", "fd00:ec2::254",
    "::ffff:8.8.8.8", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:100.64.0.1",
    "64:ff9b::8.8.8.8", "64:ff9b::10.0.0.1", "64:ff9b::169.254.169.254",
    "2002:808:808::1", "2002:a00:1::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "3ffe::1", "4000::1",
]


def samples():
    out = []
    for b in BLOCKS:
        n = ipaddress.ip_network(b)
        first, last = int(n.network_address), int(n.broadcast_address)
        cls = type(n.network_address)
        top = 2 ** n.max_prefixlen - 1
        for v in (first - 1, first, first + 1, last - 1, last, last + 1):
            if 0 <= v <= top:
                out.append(str(cls(v)))
    out += [str(ipaddress.ip_address(a)) for a in EXTRA]
    return sorted(set(out), key=lambda a: (ipaddress.ip_address(a).version, int(ipaddress.ip_address(a))))


print(json.dumps({"python": sys.version.split()[0], "is_global": {a: ipaddress.ip_address(a).is_global for a in samples()}}, indent=1))
