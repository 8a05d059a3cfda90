# Roads out, tried by an attacker inside one network namespace (a container with Docker's default
# capabilities, NET_RAW included, or a host process). Sends one probe per road and prints JSON:
# what could be sent, and whether the gate answered. The fake internet counts what arrives.
# usage: roads.py BLOCKED_V4 BLOCKED_V6 ALLOWED_V4 ALLOWED_V6 [GATE_ADDR GATE_PORT]
import json, os, socket, struct, sys, threading

v4, v6, ok4, ok6 = sys.argv[1:5]
gate = (sys.argv[5], int(sys.argv[6])) if len(sys.argv) > 6 else None
out = {}

def attempt(name, fn):
    try:
        r = fn()
        out[name] = r if r is not None else 'sent'
    except Exception as e:  # a refused send is a closed road too; the counters decide
        out[name] = 'error: %s' % e

def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff

def udp(fam, dst, port, payload=b'roads-out'):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if len(payload) > 1500:
        s.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_MTU_DISCOVER = IP_PMTUDISC_DONT: let it fragment
    s.sendto(payload, (dst, port))
    s.close()

def raw(fam, proto, dst, data):
    s = socket.socket(fam, socket.SOCK_RAW, proto)
    s.sendto(data, (dst, 0))
    s.close()

# A new echo identifier each run: an echo with the id of an answered one is conntrack's ESTABLISHED.
ECHO_ID = os.getpid() & 0xffff

def ping(fam, dst):
    if fam == socket.AF_INET:
        body = struct.pack('!BBHHH', 8, 0, 0, ECHO_ID, 1) + b'roads-out'
        body = struct.pack('!BBHHH', 8, 0, csum(body), ECHO_ID, 1) + b'roads-out'
        raw(fam, socket.IPPROTO_ICMP, dst, body)
    else:  # the kernel fills in ICMPv6 checksums
        raw(fam, socket.IPPROTO_ICMPV6, dst, struct.pack('!BBHHH', 128, 0, 0, ECHO_ID, 1) + b'roads-out')

def tcp(fam, dst, port):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect((dst, port))
        return 'connected'
    except Exception as e:
        return 'refused: %s' % e
    finally:
        s.close()

def dns_query(name):
    q = struct.pack('!HHHHHH', 0x5151, 0x0100, 1, 0, 0, 0)
    for label in name.split('.'):
        q += bytes([len(label)]) + label.encode()
    return q + b'\0' + struct.pack('!HH', 1, 1)

def ask(addr):
    fam = socket.AF_INET6 if ':' in addr[0] else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(2)
    try:
        s.sendto(dns_query('allowed.test'), addr)
        s.recvfrom(4096)
        return 'answered'
    except socket.timeout:
        return 'silent'
    finally:
        s.close()

def icmp_error(fam, peer, port, dst):
    # An ICMP error about a packet of our own allowed connection (peer:port -> us), sent to another
    # address: conntrack may call it RELATED to that connection, and `ct state related` accepts.
    c = socket.socket(fam, socket.SOCK_STREAM)
    c.settimeout(2)
    c.connect((peer, port))
    me, myport = c.getsockname()[:2]
    tcp8 = struct.pack('!HHI', port, myport, 1)
    if fam == socket.AF_INET:
        ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 40, 1, 0, 64, 6, 0, socket.inet_aton(peer), socket.inet_aton(me))
        ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
        body = struct.pack('!BBHI', 3, 1, 0, 0) + ip + tcp8
        body = body[:2] + struct.pack('!H', csum(body)) + body[4:]
        raw(fam, socket.IPPROTO_ICMP, dst, body)
    else:
        ip = struct.pack('!IHBB16s16s', 0x60000000, 20, 6, 64, socket.inet_pton(fam, peer), socket.inet_pton(fam, me))
        raw(fam, socket.IPPROTO_ICMPV6, dst, struct.pack('!BBHI', 1, 3, 0, 0) + ip + tcp8)
    c.close()

A4, A6 = socket.AF_INET, socket.AF_INET6
probes = {
    'udp4': lambda: udp(A4, v4, 9999),
    'udp6': lambda: udp(A6, v6, 9999),
    'frag4': lambda: udp(A4, v4, 9998, b'f' * 3000),
    'gre4': lambda: raw(A4, 47, v4, b'\0\0\x08\0' + b'roads-out'),
    'sctp4': lambda: raw(A4, 132, v4, struct.pack('!HHII', 9132, 9132, 0, 0) + b'\x01\0\0\x14' + b'\0' * 16),
    'raw4': lambda: raw(A4, 253, v4, b'roads-out'),
    'raw6': lambda: raw(A6, 253, v6, b'roads-out'),
    'ping4': lambda: ping(A4, v4),
    'ping6': lambda: ping(A6, v6),
    'udp53': lambda: udp(A4, v4, 53, dns_query('exfil.blocked.test')),
    'udp853': lambda: udp(A4, v4, 853),
    'udp53-v6': lambda: udp(A6, v6, 53, dns_query('exfil.blocked.test')),
    'tcp53': lambda: tcp(A4, v4, 53),
    'tcp853': lambda: tcp(A4, v4, 853),
    'tcp80': lambda: tcp(A4, v4, 80),
    'tcp80-v6': lambda: tcp(A6, v6, 80),
    'icmperr4': lambda: icmp_error(A4, ok4, 80, v4),
    'icmperr6': lambda: icmp_error(A6, ok6, 80, v6),
    'resolver-tcp80': lambda: tcp(A4, '198.51.100.53', 80),
}
if gate:
    probes['gate-direct'] = lambda: ask(gate)
    probes['gate-redirected'] = lambda: ask((v4, 53))
threads = [threading.Thread(target=attempt, args=(n, f)) for n, f in probes.items()]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(out, sort_keys=True))
