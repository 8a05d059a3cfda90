import { describe, expect, it } from 'vitest';
import { parseConfig, parseResolvConf } from '../../src/config/load.js';
import type { ConfigError } from '../../src/errors.js';
import { problems } from '../support/config.js';

describe('config', () => {
  it('parses the documented shape with defaults', () => {
    const c = parseConfig(
      `allow:
  - domain: API.Example.com.
    ports: [443, "8443/tcp", "53/udp"]
  - domain: registry.npmjs.org
  - cidr: 192.0.2.7/24
    ports: [443]
  - cidr: 2001:DB8::/48
dns:
  servers: [1.1.1.1, "2606:4700:4700::1111"]
`,
      'x.yml',
    );
    expect(c.domains).toEqual([
      { name: 'api.example.com', allowPrivate: false, ports: [{ port: 443, proto: 'tcp' }, { port: 8443, proto: 'tcp' }, { port: 53, proto: 'udp' }] },
      { name: 'registry.npmjs.org', allowPrivate: false, ports: [{ port: 443, proto: 'tcp' }] },
    ]);
    expect(c.cidrs).toEqual([
      { cidr: '192.0.2.0/24', family: 4, ports: [{ port: 443, proto: 'tcp' }] },
      { cidr: '2001:db8::/48', family: 6, ports: [{ port: 443, proto: 'tcp' }] },
    ]);
    expect(c.dns).toEqual({ servers: ['1.1.1.1', '2606:4700:4700::1111'], port: 53, timeoutMs: 2000, attempts: 2, concurrency: 32, minTtl: 30, maxTtl: 86400, maxAddresses: 256, deadlineMs: 20000,
      gate: { enabled: false, setting: undefined, listen: ['0.0.0.0', '::'], port: 5300, cacheSize: 20000, logMaxBytes: 10485760, logFiles: 2 }, openAcknowledged: false });
    expect(c.wildcards).toEqual([]);
    expect(c.staleGrace).toBe(300);
    expect(c.containers).toEqual({ enabled: true, exemptFrom: [], default: 'host', assign: [], policyLabel: true });
    expect(c.policies).toEqual([]);
    expect(c.mode).toBe('enforce');
    expect(c.warnings).toEqual([]);
    expect(c.host).toEqual({ enabled: true, enableUfw: false, outgoing: 'reject' });
  });

  it('accepts JSON and durations', () => {
    const c = parseConfig('{"allow":[{"domain":"a.example.com"}],"dns":{"timeout":"300ms","minTtl":"1m"},"staleGrace":"1h"}', 'x.json');
    expect(c.dns.timeoutMs).toBe(300);
    expect(c.dns.minTtl).toBe(60);
    expect(c.staleGrace).toBe(3600);
  });

  it('merges duplicate names (and networks), case and trailing dot ignored', () => {
    const c = parseConfig(
      `allow:
  - { domain: a.example.com, ports: [443] }
  - { domain: A.EXAMPLE.COM., ports: [80, 443] }
  - { cidr: 192.0.2.1/24, ports: [22] }
  - { cidr: 192.0.2.0/24, ports: [443] }`,
      'x.yml',
    );
    expect(c.domains).toEqual([{ name: 'a.example.com', allowPrivate: false, ports: [{ port: 80, proto: 'tcp' }, { port: 443, proto: 'tcp' }] }]);
    expect(c.cidrs).toEqual([{ cidr: '192.0.2.0/24', family: 4, ports: [{ port: 22, proto: 'tcp' }, { port: 443, proto: 'tcp' }] }]);
  });

  it('lists every problem with its path', () => {
    const p = problems(`allow:
  - domain: ok.example.com
    ports: [443, 0, "70000", "53/icmp"]
  - cidr: 10.0.0.0/33
  - domain: a.example.com
    cidr: 192.0.2.0/24
  - ports: [443]
dns:
  servers: [not-an-ip]
  atempts: 3
`);
    expect(p).toEqual([
      'allow[0].ports[1]: port must be 1-65535, optionally with "/tcp" or "/udp" (got 0)',
      'allow[0].ports[2]: port must be 1-65535, optionally with "/tcp" or "/udp" (got "70000")',
      'allow[0].ports[3]: port must be 1-65535, optionally with "/tcp" or "/udp" (got "53/icmp")',
      'allow[1].cidr: not an IPv4/IPv6 address or network: "10.0.0.0/33" (e.g. 192.0.2.0/24, 2001:db8::/48)',
      'allow[2]: each allow entry needs exactly one of `domain` or `cidr`',
      'allow[3]: each allow entry needs exactly one of `domain` or `cidr`',
      'dns.servers[0]: not an IP address: "not-an-ip"',
      'dns: unknown key "atempts" (check the spelling; see examples/egressfw.yml)',
    ]);
  });

  it('refuses wildcards without the gate and points to the gate and the proxy mode', () => {
    expect(problems('allow: [{ domain: "*.example.com" }]')[0]).toMatch(/^allow\[0\]\.domain: .*dns\.gate\.enabled: true.*egressfw proxy --mode sni/);
  });

  it.each([
    ['shell metacharacters', 'a.example.com; rm -rf /'],
    ['command substitution', '$(reboot).example.com'],
    ['backticks', '`id`.example.com'],
    ['iptables option injection', '-j ACCEPT'],
    ['leading dash', '-a.example.com'],
    ['embedded space', 'a.example.com -j ACCEPT'],
    ['newline', 'a.example.com\n-A INPUT -j ACCEPT'],
    ['quote', 'a"b.example.com'],
    ['underscore', 'a_b.example.com'],
    ['empty label', 'a..example.com'],
    ['label ending in hyphen', 'a-.example.com'],
    ['single label', 'localhost'],
    ['an IP address', '203.0.113.5'],
    ['a 64-char label', `${'a'.repeat(64)}.example.com`],
    ['254+ chars', `${Array.from({ length: 5 }, () => 'b'.repeat(60)).join('.')}.com`],
  ])('refuses a hostile or invalid name: %s', (_what, name) => {
    const p = problems(`allow: [{ domain: ${JSON.stringify(name)} }]`);
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^allow\[0\]\.domain: /);
  });

  it('accepts punycode and converts Unicode names to punycode', () => {
    const c = parseConfig('allow: [{ domain: "xn--bcher-kva.example" }, { domain: "münchen.example" }]', 'x.yml');
    expect(c.domains.map((d) => d.name)).toEqual(['xn--bcher-kva.example', 'xn--mnchen-3ya.example']);
  });

  it('accepts a 253-char name', () => {
    const name = `${Array.from({ length: 3 }, () => 'c'.repeat(63)).join('.')}.${'d'.repeat(57)}`;
    expect(name.length).toBe(249);
    expect(parseConfig(`allow: [{ domain: ${name}.com }]`, 'x.yml').domains[0]!.name).toBe(`${name}.com`);
  });

  it('refuses hostile interface names and odd IP spellings', () => {
    expect(problems('containers: { bridges: ["docker0 -j ACCEPT"] }')[0]).toMatch(/^containers\.bridges\[0\]: not an interface name/);
    expect(problems('containers: { bridges: ["-i"] }')[0]).toMatch(/^containers\.bridges\[0\]/);
    expect(problems('dns: { servers: ["0x7f.0.0.1"] }')[0]).toMatch(/^dns\.servers\[0\]: not an IP/);
    expect(problems('dns: { servers: ["fe80::1%eth0"] }')[0]).toMatch(/^dns\.servers\[0\]: not an IP/);
    expect(problems('allow: [{ cidr: "010.0.0.1" }]')[0]).toMatch(/^allow\[0\]\.cidr/);
  });

  it('reports YAML syntax errors and duplicate keys with a line', () => {
    expect(problems('allow: [\n')[0]).toMatch(/^YAML: .* at line \d+, column \d+$/);
    expect(problems('allow: []\nallow: []\n')[0]).toMatch(/^YAML: Map keys must be unique at line 2, column 1$/);
  });

  it('refuses minTtl above maxTtl and bad durations', () => {
    expect(problems('dns: { minTtl: 2h, maxTtl: 1h }')).toEqual(['dns.minTtl: must not be greater than dns.maxTtl']);
    expect(problems('staleGrace: soon')[0]).toMatch(/^staleGrace: staleGrace must be a duration/);
  });

  it('dns.maxAddresses caps addresses per name (1-256); dns.deadline bounds one name, at least dns.timeout', () => {
    expect(parseConfig('dns: { maxAddresses: 16, deadline: 45s }', 'x.yml').dns).toMatchObject({ maxAddresses: 16, deadlineMs: 45000 });
    expect(problems('dns: { maxAddresses: 257 }')[0]).toMatch(/^dns\.maxAddresses: /);
    expect(problems('dns: { maxAddresses: 0 }')[0]).toMatch(/^dns\.maxAddresses: /);
    // An unset deadline follows a long timeout; a set one shorter than the timeout is an error.
    expect(parseConfig('dns: { timeout: 30s }', 'x.yml').dns.deadlineMs).toBe(30000);
    expect(problems('dns: { timeout: 10s, deadline: 5s }')).toEqual(['dns.deadline: must be at least dns.timeout (10 s): it bounds every query of one name']);
  });

  it('an empty file is a valid config that allows nothing, with a warning', () => {
    const c = parseConfig('', 'x.yml');
    expect(c.domains).toEqual([]);
    expect(c.warnings).toEqual(['allow is empty: the config allows nothing, so sync blocks all outbound traffic except DNS to the configured servers']);
  });

  it('an ordinary config has no warnings', () => {
    expect(parseConfig('allow:\n  - domain: api.example.com\n  - cidr: 192.0.2.0/24\n  - cidr: 2001:db8::/32\n', 'x.yml').warnings).toEqual([]);
  });

  it('warns on very large and on private or special-purpose networks', () => {
    const c = parseConfig('allow:\n  - cidr: 10.1.0.0/16\n  - cidr: 0.0.0.0/1\n  - cidr: 3.0.0.0/8\n  - cidr: 169.254.169.254\n  - cidr: "2000::/8"\n  - cidr: fd00::/8\n  - cidr: 4.0.0.0/9\n', 'x.yml');
    expect(c.warnings).toEqual([
      'allow[0].cidr: 10.1.0.0/16 includes private or special-purpose addresses, e.g. 10.1.0.0 (private); allowed for every container and the host',
      'allow[1].cidr: 0.0.0.0/1 is very large (2,147,483,648 addresses): it hardly restricts anything; check it is meant',
      'allow[1].cidr: 0.0.0.0/1 includes private or special-purpose addresses, e.g. 0.0.0.0 (unspecified ("this network")); allowed for every container and the host',
      'allow[2].cidr: 3.0.0.0/8 is very large (16,777,216 addresses): it hardly restricts anything; check it is meant',
      'allow[3].cidr: 169.254.169.254/32 includes private or special-purpose addresses, e.g. 169.254.169.254 (link-local (incl. 169.254.169.254 metadata)); allowed for every container and the host',
      'allow[4].cidr: 2000::/8 is very large (2^120 addresses): it hardly restricts anything; check it is meant',
      'allow[4].cidr: 2000::/8 includes private or special-purpose addresses, e.g. 2001:: (Teredo); allowed for every container and the host',
      'allow[5].cidr: fd00::/8 is very large (2^120 addresses): it hardly restricts anything; check it is meant',
      'allow[5].cidr: fd00::/8 includes private or special-purpose addresses, e.g. fd00:: (unique-local (incl. fd00:ec2::254 metadata)); allowed for every container and the host',
    ]);
    // a network inside an accepted hole of a refused block (192.0.0.9, PCP anycast) is not special
    expect(parseConfig('allow:\n  - cidr: 192.0.0.9/32\n', 'x.yml').warnings).toEqual([]);
  });

  it('refuses 0.0.0.0/0 and ::/0 (ipset hash:net cannot store a /0) with advice', () => {
    expect(problems('allow:\n  - cidr: 0.0.0.0/0\n  - cidr: "::/0"\n')).toEqual([
      'allow[0].cidr: 0.0.0.0/0 cannot be stored (ipset hash:net holds /1 to /32): to allow every IPv4 address on these ports, list 0.0.0.0/1 and 128.0.0.0/1',
      'allow[1].cidr: ::/0 cannot be stored (ipset hash:net holds /1 to /128): to allow every IPv6 address on these ports, list ::/1 and 8000::/1',
    ]);
  });

  it('refuses a YAML alias bomb without expanding it', () => {
    const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]', ...'bcdefghi'.split('').map((k, i) => `${k}: &${k} [${Array(9).fill(`*${'abcdefghi'[i]}`).join(',')}]`)].join('\n');
    expect(problems(bomb)).toEqual([expect.stringMatching(/^YAML: too many aliases \(more than 100 expanded/)]);
    // a few aliases are fine
    const c = parseConfig('allow:\n  - { domain: a.example.com, ports: &p [443, 80] }\n  - { domain: b.example.com, ports: *p }\n', 'x.yml');
    expect(c.domains.map((d) => d.ports.length)).toEqual([2, 2]);
  });

  it('refuses a config text over 1 MiB', () => {
    expect(problems(`# ${'x'.repeat(1024 * 1024)}\n`)).toEqual(['the file is larger than 1 MiB (1,048,579 bytes): an egressfw config is a few KiB; is this the right file?']);
  });

  it('reads nameservers from resolv.conf', () => {
    expect(parseResolvConf('# c\nnameserver 10.255.255.53\nnameserver fe80::1%eth0\nsearch x\nnameserver 2001:db8::53\nnameserver bogus\n')).toEqual(['10.255.255.53', '2001:db8::53']);
  });

  it('wildcard entries need the DNS gate, and say so', () => {
    expect(problems('allow:\n  - domain: ok.example.com\n  - domain: "*.example.com"\n')).toEqual([
      'allow[1].domain: "*.example.com" is a wildcard: it needs the DNS gate (set `dns.gate.enabled: true`, see docs/dns-gate.md), since an IP firewall alone has no list of IPs for it; or list each name, or use `egressfw proxy --mode sni`',
    ]);
    const c = parseConfig('allow:\n  - domain: "*.Example.com."\n    ports: [80]\n  - domain: "*.example.com"\ndns:\n  gate: {enabled: true, port: 5353, logMaxBytes: 1MB}\n', 'x.yml');
    expect(c.wildcards).toEqual([{ name: '*.example.com', allowPrivate: false, ports: [{ port: 80, proto: 'tcp' }, { port: 443, proto: 'tcp' }] }]);
    expect(c.domains).toEqual([]);
    expect(c.dns.gate).toMatchObject({ enabled: true, port: 5353, logMaxBytes: 1048576 });
    expect(problems('allow:\n  - domain: "a*.example.com"\n')[0]).toMatch(/whole leading label/);
    expect(problems('dns:\n  gate: {port: 53}\n')[0]).toMatch(/^dns\.gate\.port: must not be 53/);
  });
});

describe('a file that is not an egressfw config is never quoted (issue 21 item 9)', () => {
  const problems = (text: string) => {
    try {
      parseConfig(text, '/etc/some-file');
    } catch (e) {
      return (e as ConfigError).problems;
    }
    throw new Error('expected a ConfigError');
  };
  const shadow = 'root:$y$j9T$Q2xhc3NpZmllZA$c2VjcmV0aGFzaA:19700:0:99999:7:::\ndaemon:*:19700:0:99999:7:::\nalice:$6$salt$hunter2hash:19700:0:99999:7:::\n';

  it('not a mapping (/etc/shadow, a list, a number): said so, without its contents', () => {
    for (const text of ['- root\n- hunter2\n', '42\n', '"password hunter2"\n', '[1, 2]', 'root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n']) {
      const p = problems(text);
      expect(p).toEqual([expect.stringMatching(/^the file is not a mapping of keys: it is not an egressfw config .*is this the right file\?$/)]);
      expect(p.join('\n')).not.toMatch(/root|hunter2|alice|daemon|password|42/);
    }
  });

  it('a mapping without one key egressfw knows (/etc/shadow reads as one, a credentials file): said so, no key named', () => {
    expect(problems(shadow)).toEqual([expect.stringMatching(/^none of its 3 top-level keys is one egressfw knows: the file is not an egressfw config/)]);
    expect(problems(shadow).join('\n')).not.toMatch(/root|hunter2|alice|daemon|\$y\$/);
    const p = problems('aws_access_key_id: AKIAIOSFODNN7EXAMPLE\naws_secret_access_key: wJalrXUtnFEMI\nhunter2: yes\n');
    expect(p).toEqual([expect.stringMatching(/^none of its 3 top-level keys is one egressfw knows: the file is not an egressfw config/)]);
    expect(p.join('\n')).not.toMatch(/aws|AKIA|wJal|hunter2/);
  });

  it('a config with a typo: unknown keys named, short and escaped, at most five', () => {
    const long = `x${'y'.repeat(200)}`;
    const p = problems(`allow: []\n"evil\\e[2J\\nkey": 1\n${long}: 2\na1: 1\na2: 1\na3: 1\na4: 1\n`);
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^\(top level\): unknown keys "evil\\u001b\[2J\\nkey", "xy{31}…", "a1", "a2", "a3" and 1 more \(check the spelling/);
    expect(p[0]).not.toContain('y'.repeat(40));
    expect(p[0]).not.toMatch(/[\x00-\x1f]/);
  });

  it('YAML errors never quote the file (an alias or tag name)', () => {
    expect(problems('allow: *secretname\n')[0]).not.toContain('secretname');
    expect(problems('allow: !hunter2 x\n').join('\n')).not.toContain('hunter2');
  });
});
