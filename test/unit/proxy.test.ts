import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parseConfig, type Config } from '../../src/config/load.js';
import { buildDesired } from '../../src/plan/desired.js';
import { buildNftDesired } from '../../src/plan/nft.js';
import { checkBaseCompose, parseBaseCompose } from '../../src/proxy/base.js';
import { checkMountDir, GENERATED_MARKER, lastHost, renderProxy, type ProxyRenderInput } from '../../src/proxy/render.js';
import { checkImageRef, checkWildcard } from '../../src/proxy/validate.js';
import { problems } from '../support/config.js';
import { golden } from '../support/files.js';


const ALLOW = `allow:
  - domain: api.example.com
    ports: [443]
  - domain: deb.example.org
    ports: [80, 443, "53/udp"]
  - domain: git.example.net
    ports: [22, 443]
  - cidr: 192.0.2.0/24
dns:
  servers: [198.51.100.53, "2001:db8::53"]
`;

const perDomainConfig = parseConfig(`${ALLOW}proxy:\n  services: [app, worker]\n  peers: [db]\n`, 'test.yml');
const sniConfig = parseConfig(
  `${ALLOW}proxy:
  mode: sni
  services: [app]
  image: registry.example.com/nginx:1.28.0-bookworm
  internalSubnet: 172.31.250.0/24
  wildcards: ["*.Files.Example.NET", "*.example.com"]
  tlsPorts: [443, 8443]
  httpPorts: [80]
`,
  'test.yml',
);

function input(config: Config, over: Partial<ProxyRenderInput> = {}): ProxyRenderInput {
  return {
    domains: config.domains,
    proxy: config.proxy,
    resolvers: ['198.51.100.53'],
    dnsPort: 53,
    validSeconds: 30,
    mountDir: './egress-proxy',
    baseFile: 'compose.yml',
    ...over,
  };
}

const allFiles = (r: ReturnType<typeof renderProxy>) => r.files.map((f) => `==> ${f.path} <==\n${f.content}`).join('\n');
const file = (r: ReturnType<typeof renderProxy>, p: string) => r.files.find((f) => f.path === p)!.content;

describe('proxy config', () => {
  it('has documented defaults', () => {
    const c = parseConfig('allow: []\n', 'x.yml');
    expect(c.proxy).toEqual({
      mode: 'per-domain',
      services: [],
      peers: [],
      image: 'nginx:1.28.0-bookworm',
      internalNetwork: 'egressfw-internal',
      egressNetwork: 'egressfw-egress',
      internalSubnet: undefined,
      wildcards: [],
      egressBridge: 'br-egressfw',
      tlsPorts: [443],
      httpPorts: [80],
      healthPort: 8999,
    });
  });

  it('wildcards with many ports: one nft set in one rule (the 15-port cap was for an iptables multiport rule)', () => {
    const ports = Array.from({ length: 20 }, (_, i) => 8000 + i);
    const c = parseConfig(`${ALLOW}proxy:\n  mode: sni\n  services: [app]\n  wildcards: ["*.example.com"]\n  tlsPorts: [${ports.join(', ')}]\n`, 'test.yml');
    const rule = buildNftDesired(c, { 4: [], 6: [] }).rules.find((r) => r.tag === 'proxy-wildcards')!;
    expect(rule.text).toContain(`tcp dport { ${[...c.proxy.httpPorts, ...ports].join(', ')} } accept`);
  });

  it('normalises wildcards (lowercase, sorted, unique) and services', () => {
    expect(sniConfig.proxy.wildcards).toEqual(['*.example.com', '*.files.example.net']);
    expect(perDomainConfig.proxy.services).toEqual(['app', 'worker']);
  });

  it('refuses hostile or wrong values, naming the path', () => {
    const p = problems(`proxy:
  services: ["app; rm -rf /", "-x", "ok"]
  peers: ["db\\nprivileged: true"]
  image: "nginx:1.28\\n    privileged: true"
  internalNetwork: "net work"
  internalSubnet: "2001:db8::/64"
  wildcards: ["example.com", "*.com", "*.exa mple.com", "**.example.com"]
  egressBridge: "br-$(id)"
  tlsPorts: [0]
  extra: 1
`);
    const text = p.join('\n');
    expect(text).toMatch(/^proxy\.services\[0\]: not a compose service name/m);
    expect(text).toMatch(/^proxy\.services\[1\]: not a compose service name/m);
    expect(text).not.toMatch(/proxy\.services\[2\]/);
    expect(text).toMatch(/^proxy\.peers\[0\]: not a compose service name/m);
    expect(text).toMatch(/^proxy\.image: not a Docker image reference/m);
    expect(text).toMatch(/^proxy\.internalNetwork: not a compose network name/m);
    expect(text).toMatch(/^proxy\.internalSubnet: not an IPv4 network/m);
    expect(text).toMatch(/^proxy\.wildcards\[0\]: a wildcard must look like "\*\.example\.com"/m);
    expect(text).toMatch(/^proxy\.wildcards\[1\]: "\*\.com": after "\*\.": .*single label/m);
    expect(text).toMatch(/^proxy\.wildcards\[2\]: .*not a hostname/m);
    expect(text).toMatch(/^proxy\.wildcards\[3\]: a wildcard must look like/m);
    expect(text).toMatch(/^proxy\.egressBridge: not an interface name/m);
    expect(text).toMatch(/^proxy\.tlsPorts\[0\]: port must be 1-65535/m);
    expect(text).toMatch(/^proxy: unknown key "extra"/m);
  });

  it('wants pinned images', () => {
    expect(checkImageRef('nginx')).toMatch(/not pinned/);
    expect(checkImageRef('nginx:latest')).toMatch(/not pinned/);
    expect(checkImageRef('nginx:1.28.0-bookworm')).toBeNull();
    expect(checkImageRef(`nginx@sha256:${'a'.repeat(64)}`)).toBeNull();
    expect(checkImageRef(`registry.example.com:5000/team/nginx:1.28@sha256:${'0'.repeat(64)}`)).toBeNull();
    expect(checkImageRef('Nginx:1.28')).toMatch(/not a Docker image reference/);
    expect(checkImageRef('nginx:1.28 --privileged')).toMatch(/not a Docker image reference/);
    expect(checkImageRef('nginx:${TAG}')).toMatch(/not a Docker image reference/);
  });

  it('checks wildcards like exact names after "*."', () => {
    expect(checkWildcard('*.Example.COM.')).toEqual({ ok: true, name: '*.example.com' });
    expect(checkWildcard('*.bücher.example')).toEqual({ ok: true, name: '*.xn--bcher-kva.example' });
    expect(checkWildcard('*.example.com;').ok).toBe(false);
    expect(checkWildcard('a.*.example.com').ok).toBe(false);
  });

  it('refuses wildcards directly under a public suffix (anyone can register names there)', () => {
    for (const w of ['*.co.uk', '*.github.io', '*.s3.amazonaws.com', '*.herokuapp.com', '*.us-east-1.compute.amazonaws.com', '*.foo.ck']) {
      const r = checkWildcard(w);
      expect([w, r.ok]).toEqual([w, false]);
      if (!r.ok) expect(r.problem).toMatch(/public suffix/);
    }
    // One registrable name and what is below it is fine, also under private suffixes.
    for (const w of ['*.example.com', '*.example.co.uk', '*.myname.github.io', '*.bucket-1.s3.amazonaws.com', '*.wild.test', '*.bücher.example']) {
      expect([w, checkWildcard(w).ok]).toEqual([w, true]);
    }
    expect(problems('proxy:\n  mode: sni\n  wildcards: ["*.github.io"]\n')[0]).toMatch(
      /^proxy\.wildcards\[0\]: "\*\.github\.io": github\.io is a public suffix/,
    );
  });

  it('refuses zones that span many owners: suffixes below them on the list, or names that encode any IP (issue 21 item 3)', () => {
    const below = {
      '*.amazonaws.com': /the Public Suffix List has \d{3,} suffixes below amazonaws\.com \(/,
      '*.windows.net': /suffixes below windows\.net \(.*core\.windows\.net/,
      '*.core.windows.net': /suffixes below core\.windows\.net \(/,
    };
    for (const [w, why] of Object.entries(below)) {
      const r = checkWildcard(w);
      expect([w, r.ok ? 'accepted' : r.problem]).toEqual([w, expect.stringMatching(why)]);
      if (!r.ok) expect(r.problem).toMatch(/inside one registrable domain/);
    }
    for (const w of ['*.sslip.io', '*.nip.io', '*.xip.io', '*.traefik.me', '*.x.nip.io']) {
      const r = checkWildcard(w);
      expect([w, r.ok ? 'accepted' : r.problem]).toEqual([w, expect.stringMatching(/answers every name below it with the IP address written in the name/)]);
    }
    // exact names there stay possible, and zones the list has nothing below are fine
    expect(parseConfig('allow:\n  - domain: 203-0-113-7.sslip.io\n  - domain: ec2-203-0-113-7.compute-1.amazonaws.com\n', 'x.yml').domains).toHaveLength(2);
    for (const w of ['*.google.com', '*.pypi.org', '*.mybucket.s3.amazonaws.com', '*.ghcr.io']) expect([w, checkWildcard(w).ok]).toEqual([w, true]);
    expect(problems('allow:\n  - domain: "*.amazonaws.com"\ndns:\n  gate: {enabled: true}\n')[0]).toMatch(/^allow\[0\]\.domain: "\*\.amazonaws\.com": the Public Suffix List has/);
  });

  it('cross-checks the section', () => {
    expect(problems('proxy:\n  wildcards: ["*.example.com"]\n')).toEqual([
      'proxy.wildcards: wildcards need `mode: sni` (one proxy that routes by name); a per-domain proxy forwards to one fixed name',
    ]);
    expect(problems('proxy:\n  services: [app]\n  peers: [app]\n')).toEqual(['proxy.peers: "app" is also in proxy.services (a service is either protected or a peer)']);
    expect(problems('proxy:\n  internalNetwork: x\n  egressNetwork: x\n')).toEqual(['proxy.egressNetwork: must differ from proxy.internalNetwork']);
    expect(problems('proxy:\n  httpPorts: [80, 443]\n')[0]).toMatch(/^proxy\.httpPorts: 443 is also in proxy\.tlsPorts/);
    expect(problems('allow:\n  - domain: a.example.com\n    ports: [8999]\n')[0]).toMatch(/^proxy\.healthPort: 8999 is also a proxied port/);
    // wildcards allowed in sni mode; the bridge may be any name the firewall judges
    expect(() => parseConfig('proxy:\n  mode: sni\n  wildcards: ["*.example.com"]\n', 'x.yml')).not.toThrow();
  });
});

describe('proxy render: per-domain', () => {
  const r = renderProxy(input(perDomainConfig));

  it('matches the golden files', () => {
    golden('proxy-per-domain.txt', allFiles(r));
  });

  it('one proxy per domain, aliased under its name, forwarding each port to the same name and port', () => {
    expect(r.files.map((f) => f.path)).toEqual([
      'compose.egress.yml',
      'nginx/api.example.com.conf',
      'nginx/deb.example.org.conf',
      'nginx/git.example.net.conf',
    ]);
    const deb = file(r, 'nginx/deb.example.org.conf');
    expect(deb).toContain('        listen 80;\n        listen 443;\n        listen 53 udp;\n');
    expect(deb).toContain('        proxy_pass deb.example.org:$server_port;\n');
    // the configured IPv4 resolver, never Docker's 127.0.0.11; re-resolved after valid=
    expect(deb).toContain('    resolver 198.51.100.53 valid=30s ipv6=off;\n');
    expect(deb).not.toContain('127.0.0.11');
    expect(deb).toContain('    server {\n        listen 127.0.0.1:8999;\n        return "ok\\n";\n    }\n');
    for (const f of r.files) expect(f.content.startsWith(GENERATED_MARKER)).toBe(true);
  });

  it('compose: protected services only on the internal network; hardened, pinned proxies', () => {
    // PyYAML (docker-compose 1.29) reads YAML 1.1: parse it that way
    const doc = parseYaml(file(r, 'compose.egress.yml'), { version: '1.1' }) as any;
    expect(doc.version).toBe('2.4');
    for (const s of ['app', 'worker']) {
      expect(doc.services[s].networks).toEqual({ 'egressfw-internal': {} });
      expect(Object.keys(doc.services[s].depends_on)).toEqual(['egressfw-api.example.com', 'egressfw-deb.example.org', 'egressfw-git.example.net']);
      expect(doc.services[s].depends_on['egressfw-api.example.com']).toEqual({ condition: 'service_healthy' });
    }
    // a peer keeps its implicit default network and joins the internal one
    expect(doc.services.db.networks).toEqual({ default: {}, 'egressfw-internal': {} });
    expect(doc.networks).toEqual({ 'egressfw-internal': { internal: true }, 'egressfw-egress': {} });
    const p = doc.services['egressfw-api.example.com'];
    expect(p).toMatchObject({
      image: 'nginx:1.28.0-bookworm',
      entrypoint: ['nginx'],
      command: ['-e', 'stderr', '-g', 'daemon off;'],
      restart: 'unless-stopped',
      user: '65534:65534',
      cap_drop: ['ALL'],
      security_opt: ['no-new-privileges:true'],
      sysctls: { 'net.ipv4.ip_unprivileged_port_start': 0 },
      read_only: true,
      tmpfs: ['/tmp:size=16m,mode=1777'],
      volumes: ['./egress-proxy/nginx/api.example.com.conf:/etc/nginx/nginx.conf:ro'],
      networks: { 'egressfw-internal': { aliases: ['api.example.com'] }, 'egressfw-egress': {} },
      healthcheck: { test: ['CMD', 'bash', '-c', 'exec 3<>/dev/tcp/127.0.0.1/8999'], interval: '5s', timeout: '3s', retries: 3 },
    });
    expect(p.cap_add).toBeUndefined();
  });

  it('uses a non-default DNS port and only the given resolvers', () => {
    const r2 = renderProxy(input(perDomainConfig, { resolvers: ['192.0.2.1', '192.0.2.2'], dnsPort: 5353, validSeconds: 5 }));
    expect(file(r2, 'nginx/api.example.com.conf')).toContain('resolver 192.0.2.1:5353 192.0.2.2:5353 valid=5s ipv6=off;');
  });

  it('quotes YAML scalars a YAML 1.1 reader would take for something else', () => {
    const c = parseConfig('allow:\n  - domain: a.example.com\nproxy:\n  services: ["on", "1.5", "no"]\n', 'x.yml');
    const y = file(renderProxy(input(c)), 'compose.egress.yml');
    expect(y).toContain('\n  "on":\n');
    expect(y).toContain('\n  "1.5":\n');
    const doc = parseYaml(y, { version: '1.1' }) as any;
    expect(Object.keys(doc.services).slice(0, 3)).toEqual(['1.5', 'no', 'on']);
  });
});

describe('proxy render: sni', () => {
  const r = renderProxy(input(sniConfig));
  const conf = file(r, 'nginx/sni.conf');

  it('matches the golden files', () => {
    golden('proxy-sni.txt', allFiles(r));
  });

  it('routes TLS by SNI and HTTP by Host, only names on the allowlist, per port', () => {
    expect(conf).toContain(
      [
        '    map $ssl_preread_server_name $egressfw_tls_443 {',
        '        hostnames;',
        '        default unix:/tmp/egressfw-refused.sock;',
        '        api.example.com api.example.com:443;',
        '        deb.example.org deb.example.org:443;',
        '        git.example.net git.example.net:443;',
        '        ~*^([a-z0-9-]+\\.)+example\\.com$ $ssl_preread_server_name:443;  # *.example.com',
        '        ~*^([a-z0-9-]+\\.)+files\\.example\\.net$ $ssl_preread_server_name:443;  # *.files.example.net',
        '    }',
        '    server {',
        '        listen 443;',
        '        ssl_preread on;',
        '        proxy_pass $egressfw_tls_443;',
        '    }',
      ].join('\n'),
    );
    // 8443: no exact name uses it, the wildcards do
    expect(conf).toMatch(/map \$ssl_preread_server_name \$egressfw_tls_8443 \{\n {8}hostnames;\n {8}default unix:\/tmp\/egressfw-refused\.sock;\n {8}~\*/);
    expect(conf).toContain('        deb.example.org deb.example.org:80;\n');
    expect(conf).not.toMatch(/api\.example\.com api\.example\.com:80;/);
    expect(conf).toContain('        if ($egressfw_http_80 = "") {\n            return 403');
    expect(conf).toContain('            proxy_pass http://$egressfw_http_80;\n');
    expect(conf).toContain('            proxy_set_header Host $host;\n');
    expect(conf).toContain('    resolver 198.51.100.53 valid=30s ipv6=off;\n');
  });

  it('aliases the exact names, fixes the proxy address, names the egress bridge, says what is not served', () => {
    const doc = parseYaml(file(r, 'compose.egress.yml'), { version: '1.1' }) as any;
    expect(doc.services['egressfw-sni'].networks['egressfw-internal']).toEqual({
      aliases: ['api.example.com', 'deb.example.org', 'git.example.net'],
      ipv4_address: '172.31.250.254',
    });
    expect(doc.services['egressfw-sni'].image).toBe('registry.example.com/nginx:1.28.0-bookworm');
    expect(doc.networks['egressfw-internal']).toEqual({ internal: true, ipam: { config: [{ subnet: '172.31.250.0/24' }] } });
    expect(doc.networks['egressfw-egress']).toEqual({ driver_opts: { 'com.docker.network.bridge.name': 'br-egressfw' } });
    expect(r.proxyAddress).toBe('172.31.250.254');
    expect(r.notes).toEqual([
      'deb.example.org: 53/udp is not proxied in sni mode (only TLS and HTTP carry a name); use --mode per-domain for it',
      'git.example.net: 22/tcp is not proxied in sni mode; add 22 to proxy.tlsPorts or proxy.httpPorts',
      'names under *.example.com, *.files.example.net cannot be network aliases: give the protected services extra_hosts entries "NAME:172.31.250.254" for the names they use',
    ]);
  });

  it('without wildcards: no fixed bridge name, no HTTP block when no name uses an HTTP port', () => {
    const c = parseConfig('allow:\n  - domain: a.example.com\nproxy:\n  mode: sni\n  services: [app]\n', 'x.yml');
    const r2 = renderProxy(input(c));
    const doc = parseYaml(file(r2, 'compose.egress.yml'), { version: '1.1' }) as any;
    expect(doc.networks['egressfw-egress']).toEqual({});
    expect(file(r2, 'nginx/sni.conf')).not.toContain('http {');
  });
});

describe('proxy: the one firewall rule SNI wildcards need', () => {
  it('lets only the proxy bridge reach public IPv4 addresses on the proxied ports, after the allowlist, before the rejects', () => {
    const rules = buildDesired(sniConfig, [], [{ host: '198.51.100.53', port: 53 }]).nft!.rules;
    const at = rules.findIndex((r) => r.tag === 'proxy-wildcards');
    expect(rules[at]!.text).toMatch(/^iifname "br-egressfw" ip daddr != \{ 0\.0\.0\.0\/8, 10\.0\.0\.0\/8, .*169\.254\.0\.0\/16.* \} tcp dport \{ 80, 443, 8443 \} accept$/);
    expect(at).toBeLessThan(rules.findIndex((r) => r.tag === 'reject'));
    expect(rules.filter((r) => r.tag.startsWith('proxy'))).toHaveLength(1);
  });

  it('adds nothing without wildcards', () => {
    expect(buildDesired(perDomainConfig, [], []).nft!.rules.some((r) => r.tag.includes('proxy'))).toBe(false);
  });
});

describe('proxy: the user compose file', () => {
  const base = parseBaseCompose(
    `services:
  app: { image: x }
  worker:
    image: x
    networks: [default, backend]
  api:
    image: x
    networks:
      private: {}
    ports: ["8080:80"]
  hostnet: { image: x, network_mode: host }
  db:
    image: x
    networks: [backend]
networks:
  backend: {}
  private: { internal: true }
`,
    'compose.yml',
  );

  it('refuses services that would keep a route out, and generated-name clashes', () => {
    const c = checkBaseCompose(base, ['app', 'worker', 'api', 'hostnet', 'missing'], ['db', 'gone'], ['egressfw-sni', 'app']);
    expect(c.problems.join('\n')).toMatch(/service "worker" lists networks in compose\.yml \(default, backend\)/);
    expect(c.problems.join('\n')).toMatch(/service "hostnet" sets network_mode: host/);
    expect(c.problems.join('\n')).toMatch(/service "missing" \(proxy\.services \/ --services\) is not in compose\.yml/);
    expect(c.problems.join('\n')).toMatch(/service "gone" \(proxy\.peers\) is not in compose\.yml/);
    expect(c.problems.join('\n')).toMatch(/already has a service named "app"/);
    expect(c.problems.join('\n')).not.toMatch(/"api" lists/); // only internal networks of its own
    expect(c.problems).toHaveLength(5);
    expect(c.warnings).toEqual([expect.stringMatching(/^service "api" publishes ports/)]);
  });

  it('a peer that lists its own networks only gains the internal one', () => {
    const c = parseConfig('allow:\n  - domain: a.example.com\nproxy:\n  services: [app]\n  peers: [db]\n', 'x.yml');
    const doc = parseYaml(file(renderProxy(input(c, { base })), 'compose.egress.yml'), { version: '1.1' }) as any;
    expect(doc.services.db.networks).toEqual({ 'egressfw-internal': {} });
  });

  it('parse errors are readable', () => {
    expect(() => parseBaseCompose('a: [', 'c.yml')).toThrow(/c\.yml: not valid YAML/);
    expect(() => parseBaseCompose('foo: 1\n', 'c.yml')).toThrow(/no `services:` mapping/);
  });
});

describe('proxy helpers', () => {
  it('lastHost', () => {
    expect(lastHost('172.31.250.0/24')).toBe('172.31.250.254');
    expect(lastHost('198.51.100.32/28')).toBe('198.51.100.46');
    expect(lastHost('10.0.0.0/8')).toBe('10.255.255.254');
  });
  it('mount dirs compose can take as is', () => {
    for (const ok of ['./egress-proxy', '.', '../x/egress', './a/b_c+d@e']) expect(checkMountDir(ok)).toBeNull();
    for (const bad of ['./my dir', './$HOME', '"x"', './a:b', '/abs/path', './x/../../y\n']) expect(checkMountDir(bad)).not.toBeNull();
  });
});

describe('the Public Suffix List walk (src/net/public-suffix.ts)', () => {
  it('says "is a public suffix" exactly as tldts does, for every rule, exception, child and parent on the list', async () => {
    const { getPublicSuffix } = await import('tldts');
    const { isPublicSuffix, suffixesBelow } = await import('../../src/net/public-suffix.js');
    const names = new Set<string>(['com', 'example.com', 'a.b.example.com', 'city.kawasaki.jp', 'x.kawasaki.jp', 'www.ck', 'foo.ck', 'compute.amazonaws.com', 'x.compute.amazonaws.com']);
    for (const tld of ['com', 'net', 'io', 'jp', 'uk', 'ck', 'org']) for (const s of suffixesBelow(tld, 100_000).examples) {
      const n = s.replace(/^\*\./, 'x.');
      names.add(n).add(`y.${n}`).add(n.split('.').slice(1).join('.'));
    }
    expect(names.size).toBeGreaterThan(3000);
    const differ = [...names].filter((n) => isPublicSuffix(n) !== (getPublicSuffix(n, { allowPrivateDomains: true }) === n));
    expect(differ).toEqual([]);
  });
});
