import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseConfig, type Config } from '../../src/config/load.js';
import { UsageError } from '../../src/errors.js';
import { renderAntrea } from '../../src/export/antrea.js';
import { renderCilium } from '../../src/export/cilium.js';
import { buildModel, conjoin, DEFAULT_LABELS, termMatches, type Term } from '../../src/export/model.js';
import { cidrContains, commonNotes, guardRanges, yamlStream } from '../../src/export/render.js';
import { REFUSED_V6_CIDRS } from '../../src/net/ip.js';
import { runExport } from '../../src/commands/export.js';
import { crdValidator, loadCrd } from '../support/crd-validator.js';
import { golden } from '../support/files.js';
import { antreaAllows, antreaFqdnMatches, ciliumAllows, ciliumPatternMatches, egressfwAllows, podLabels, type Query, type Workload } from '../support/engine-eval.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const EXAMPLE = path.join(ROOT, 'examples', 'egressfw.yml');
const POLICIES_EXAMPLE = path.join(ROOT, 'examples', 'egressfw-policies.yml');

/** Configs the export must carry over: names, wildcards, networks, ports and protocols, IPv6, policies, default none. */
const CONFIGS: Record<string, string> = {
  example: readFileSync(EXAMPLE, 'utf8'),
  policiesExample: readFileSync(POLICIES_EXAMPLE, 'utf8'),
  wildcards: `
dns: { gate: { enabled: true } }
allow:
  - domain: "*.example.com"
    ports: [443, "8443/tcp"]
  - domain: api.example.com
    ports: [80]
  - domain: ntp.example.net
    ports: ["123/udp"]
  - domain: "*.internal.example.org"
    allowPrivate: true
  - domain: intranet.example.org
    allowPrivate: true
    ports: [443, "53/udp", "53/tcp"]
  - cidr: 2606:4700::/32
    ports: [443, "443/udp"]
  - cidr: 10.20.0.0/16
    ports: [5432]
  - cidr: 192.0.2.7
`,
  policies: `
dns: { gate: { enabled: true } }
allow:
  - domain: deb.debian.org
    ports: [80, 443]
policies:
  payments:
    allow:
      - domain: api.stripe.com
      - domain: "*.payments.example"
        ports: [443, "4433/udp"]
      - cidr: 2001:db8:77::/48
        ports: [8443]
  builds:
    allow:
      - domain: registry.npmjs.org
      - domain: github.com
        ports: [22, 443]
  quiet:
    allow: []
containers:
  default: none
  assign:
    - match: { project: shop, service: api }
      policy: payments
    - match: { project: shop }
      policy: host
    - match: { label: ci }
      policy: builds
    - match: { label: tier=batch, service: worker }
      policy: quiet
    - match: { service: legacy }
      policy: retired
`,
  noIpv6: `
ipv6: false
allow:
  - domain: api.github.com
  - cidr: 2001:db8::/32
  - cidr: 198.51.100.0/24
    ports: ["514/udp"]
policies:
  web:
    allow:
      - domain: cdn.example.net
        ports: [80, 443]
containers:
  default: web
  policyLabel: false
  assign:
    - match: { project: admin }
      policy: host
`,
};

const configOf = (name: string): Config => parseConfig(CONFIGS[name]!, `${name}.yml`);

const RENDER = { namespace: 'default', clusterWide: false };
const exported = (config: Config, engine: 'cilium' | 'antrea', opts = RENDER) => {
  const model = buildModel(config, DEFAULT_LABELS);
  const r = engine === 'cilium' ? renderCilium(model, opts) : renderAntrea(model, opts);
  // what is evaluated is what is printed: the YAML stream read back
  const text = yamlStream(r.objects, ['test'], [...model.notes, ...commonNotes(config), ...r.notes]);
  const objects = parseAllDocuments(text).map((d) => d.toJS()) as any[];
  return { objects, notes: [...model.notes, ...commonNotes(config), ...r.notes], text };
};

const validators = {
  CiliumNetworkPolicy: crdValidator('cilium-ciliumnetworkpolicies.json', 'v2'),
  CiliumClusterwideNetworkPolicy: crdValidator('cilium-ciliumclusterwidenetworkpolicies.json', 'v2'),
  ClusterNetworkPolicy: crdValidator('antrea-clusternetworkpolicies.json', 'v1beta1'),
} as const;

describe('export: every object is valid against the engine CRD schema', () => {
  for (const name of Object.keys(CONFIGS)) {
    for (const engine of ['cilium', 'antrea'] as const) {
      for (const clusterWide of [false, true]) {
        it(`${name} -> ${engine}${clusterWide ? ' --cluster-wide' : ''}`, () => {
          const { objects } = exported(configOf(name), engine, { namespace: 'apps', clusterWide });
          expect(objects.length).toBeGreaterThan(0);
          for (const o of objects) {
            const validate = validators[o.kind as keyof typeof validators];
            expect(validate, o.kind).toBeDefined();
            const ok = validate(o);
            expect(validate.errors ?? [], `${o.kind}/${o.metadata.name}`).toEqual([]);
            expect(ok).toBe(true);
            // metadata: the API server's own rules (DNS-1123 subdomain names, label syntax)
            expect(o.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/);
            expect(o.metadata.name.length).toBeLessThanOrEqual(253);
            if (o.kind === 'CiliumNetworkPolicy') expect(o.metadata.namespace).toBe('apps');
            else expect(o.metadata.namespace).toBeUndefined();
          }
        });
      }
    }
  }

  it('the validator is not a rubber stamp: it rejects what the API server rejects', () => {
    const cnp = validators.CiliumNetworkPolicy;
    const good = exported(configOf('wildcards'), 'cilium').objects[0];
    expect(cnp(good)).toBe(true);
    const bad = (mutate: (o: any) => void) => {
      const o = structuredClone(good);
      mutate(o);
      return cnp(o);
    };
    expect(bad((o) => (o.spec.egress[1].toFQDNs[0] = { matchName: 'a.example.com', matchPattern: '*.example.com' }))).toBe(false); // oneOf
    expect(bad((o) => (o.spec.egress[1].toFQDNs[0] = { matchName: 'bad name' }))).toBe(false); // pattern
    expect(bad((o) => (o.spec.egress[1].toPorts[0].ports[0].protocol = 'tcp'))).toBe(false); // enum
    expect(bad((o) => (o.spec.egress[1].toFQDN = o.spec.egress[1].toFQDNs))).toBe(false); // unknown field
    expect(bad((o) => (o.spec.egressDeny[0].toCIDRSet[0].cidr = '10.0.0.0'))).toBe(false); // CIDR pattern
    expect(bad((o) => (o.spec.nodeSelector = {}))).toBe(false); // oneOf endpointSelector | nodeSelector
    const acnp = validators.ClusterNetworkPolicy;
    const a = exported(configOf('wildcards'), 'antrea').objects[0];
    expect(acnp(a)).toBe(true);
    const badA = (mutate: (o: any) => void) => {
      const o = structuredClone(a);
      mutate(o);
      return acnp(o);
    };
    expect(badA((o) => delete o.spec.priority)).toBe(false);
    expect(badA((o) => (o.spec.priority = 0))).toBe(false);
    expect(badA((o) => (o.spec.egress[0].action = 'allow'))).toBe(false);
    expect(badA((o) => (o.spec.egress.at(-2).to[0].ipBlock = { cidr: '10.0.0.0/33' }))).toBe(false);
    expect(badA((o) => (o.spec.egress[0].ports[0].protocol = 'ICMP'))).toBe(false);
  });

  it('fixtures name their source: repository, path and commit', () => {
    for (const f of ['cilium-ciliumnetworkpolicies.json', 'cilium-ciliumclusterwidenetworkpolicies.json', 'antrea-clusternetworkpolicies.json']) {
      const crd = loadCrd(f);
      expect(crd.source.repository).toMatch(/^(cilium\/cilium|antrea-io\/antrea)$/);
      expect(crd.source.commit).toMatch(/^[0-9a-f]{40}$/);
      // structure only: no description text left (a property may be called "description")
      const texts: string[] = [];
      const walk = (n: unknown): void => {
        if (Array.isArray(n)) n.forEach(walk);
        else if (n && typeof n === 'object') for (const [k, v] of Object.entries(n)) (k === 'description' && typeof v === 'string' ? texts.push(v) : walk(v));
      };
      walk(crd.versions);
      expect(texts).toEqual([]);
    }
  });
});

/** Cilium's own rules beyond its schema (pkg/policy/api/rule_validation.go, the toFQDNs docs). */
function ciliumRuleProblems(o: any): string[] {
  const out: string[] = [];
  for (const r of o.specs ?? [o.spec]) {
    if (!r.egress && !r.egressDeny && !r.ingress && !r.ingressDeny) out.push('a rule needs one of ingress, ingressDeny, egress, egressDeny');
    const dnsNames = (r.egress ?? []).flatMap((e: any) => (e.toPorts ?? []).flatMap((tp: any) => tp.rules?.dns ?? []));
    for (const e of [...(r.egress ?? []), ...(r.egressDeny ?? [])]) {
      const l3 = ['toEndpoints', 'toCIDR', 'toCIDRSet', 'toEntities', 'toServices', 'toGroups', 'toFQDNs', 'toNodes'].filter((k) => e[k]);
      if (l3.length > 1) out.push(`one egress rule combines ${l3.join(' and ')}`);
      for (const tp of e.toPorts ?? []) {
        if (tp.ports?.length > 40) out.push('more than 40 ports in one toPorts');
        if (tp.rules?.dns && !tp.ports.every((p: any) => p.port === '53')) out.push('DNS rules must name port 53 and only 53');
        if (tp.rules && !tp.rules.dns && tp.ports.some((p: any) => p.protocol !== 'TCP')) out.push('L7 rules only on TCP');
      }
      for (const c of e.toCIDRSet ?? []) for (const x of c.except ?? []) if (!cidrContains(c.cidr, x)) out.push(`except ${x} is not inside ${c.cidr}`);
      for (const f of e.toFQDNs ?? []) {
        const name = f.matchName ?? f.matchPattern;
        if (!/^[-a-zA-Z0-9_.*]+$/.test(name) || name.length > 255) out.push(`bad FQDN selector ${name}`);
        // toFQDNs learns addresses only from lookups its DNS proxy saw: the same policy must allow them
        const sample = f.matchName ?? f.matchPattern.replace(/\*/g, 'x');
        if (!dnsNames.some((d: any) => (d.matchName ? d.matchName === sample : ciliumPatternMatches(d.matchPattern, sample)))) out.push(`${name}: no DNS rule lets the proxy see its lookup`);
      }
    }
    if (r.egress && r.enableDefaultDeny?.egress !== true) out.push('egress default deny must be explicit');
  }
  return out;
}

/** Antrea's own rules beyond its schema (pkg/controller/networkpolicy/validate.go, the FQDN docs). */
function antreaRuleProblems(o: any): string[] {
  const out: string[] = [];
  const rules = o.spec.egress as any[];
  const names = rules.map((r) => r.name);
  if (new Set(names).size !== names.length) out.push('rule names must be unique');
  rules.forEach((r, i) => {
    for (const p of r.to ?? []) {
      if (p.fqdn !== undefined) {
        if (!/^[-0-9a-zA-Z.*]+$/.test(p.fqdn)) out.push(`invalid characters in fqdn ${p.fqdn}`);
        if (Object.keys(p).length > 1) out.push('an fqdn peer stands alone');
        if (r.action !== 'Allow') out.push('FQDN peers only in Allow rules (the docs: Drop/Reject FQDN rules can leak)');
        // Antrea learns addresses from the DNS responses: DNS must be allowed before any rule can drop it
        const dns = rules.findIndex((x) => x.name === 'dns');
        if (dns < 0 || rules.slice(0, dns).some((x) => x.action !== 'Allow' && !(x.to ?? []).every((t: any) => t.ipBlock?.cidr === '::/0'))) out.push('DNS must be allowed before any Drop');
      }
      if (p.ipBlock) for (const x of p.ipBlock.except ?? []) if (!cidrContains(p.ipBlock.cidr, x) || x === p.ipBlock.cidr) out.push(`except ${x} not a strict subset of ${p.ipBlock.cidr}`);
    }
    if (r.action === 'Drop' && !r.to && i !== rules.length - 1) out.push('the catch-all Drop must be last');
  });
  if (rules.at(-1)?.action !== 'Drop' || rules.at(-1)?.to) out.push('the last rule must drop everything else (default deny)');
  if (!(o.spec.priority >= 1 && o.spec.priority <= 10000)) out.push('priority 1-10000');
  return out;
}

describe('export: what the schemas cannot say', () => {
  for (const name of Object.keys(CONFIGS)) {
    it(`${name}: Cilium rules and Antrea rules hold`, () => {
      for (const o of exported(configOf(name), 'cilium').objects) expect(ciliumRuleProblems(o), o.metadata.name).toEqual([]);
      for (const o of exported(configOf(name), 'antrea').objects) expect(antreaRuleProblems(o), o.metadata.name).toEqual([]);
    });
  }
  it('the checks find a toFQDNs without its DNS rule, and an Antrea policy without its final drop', () => {
    const c = exported(configOf('example'), 'cilium').objects[0];
    c.spec.egress = c.spec.egress.filter((e: any) => !e.toEndpoints);
    expect(ciliumRuleProblems(c).join('\n')).toContain('no DNS rule');
    const a = exported(configOf('example'), 'antrea').objects[0];
    a.spec.egress.pop();
    expect(antreaRuleProblems(a).join('\n')).toContain('default deny');
  });
  it("Cilium's one-label '*' and Antrea's any-depth '*' (the engines' documented examples)", () => {
    expect(ciliumPatternMatches('*.cilium.io', 'www.cilium.io')).toBe(true);
    expect(ciliumPatternMatches('*.cilium.io', 'a.b.cilium.io')).toBe(false);
    expect(ciliumPatternMatches('*.cilium.io', 'cilium.io')).toBe(false);
    expect(ciliumPatternMatches('*cilium.io', 'subcilium.io')).toBe(true);
    expect(ciliumPatternMatches('sub*.cilium.io', 'subdomain.cilium.io')).toBe(true);
    expect(antreaFqdnMatches('*foobar.com', 'test.uswest.foobar.com')).toBe(true);
    expect(antreaFqdnMatches('*.foobar.com', 'foobar.com')).toBe(false);
  });
});

// ---- the same meaning

const PUBLIC4 = '93.184.215.14';
const PUBLIC6 = '2606:2800:21f:cb07::1';
const PRIVATE4 = '10.1.2.3';
const PRIVATE6 = 'fd00::5';

/** Every name the config mentions, and names around its wildcards: one and two labels below, the apex, a look-alike. */
function namesOf(config: Config): string[] {
  const lists = [config, ...config.policies];
  const out = new Set<string>(['unlisted.example.org']);
  for (const l of lists) {
    for (const d of l.domains) out.add(d.name);
    for (const w of l.wildcards) {
      const zone = w.name.slice(2);
      for (const n of [`a.${zone}`, `a.b.${zone}`, zone, `evil${zone}`]) out.add(n);
    }
  }
  return [...out];
}
function portsOf(config: Config): { port: number; proto: 'tcp' | 'udp' }[] {
  const out = new Map<string, { port: number; proto: 'tcp' | 'udp' }>();
  const add = (port: number, proto: 'tcp' | 'udp') => out.set(`${port}/${proto}`, { port, proto });
  for (const l of [config, ...config.policies]) {
    for (const e of [...l.domains, ...l.wildcards, ...l.cidrs]) for (const p of e.ports) for (const proto of ['tcp', 'udp'] as const) add(p.port, proto);
  }
  add(8080, 'tcp');
  add(53, 'udp');
  return [...out.values()];
}
function addressesOf(config: Config): string[] {
  const out = new Set([PUBLIC4, PUBLIC6, PRIVATE4, PRIVATE6, '203.0.113.9']);
  for (const l of [config, ...config.policies]) for (const c of l.cidrs) out.add(c.cidr.split('/')[0]!);
  return [...out];
}
/** Workloads for every assignment path: each assign entry, the egressfw.policy label, unknown names, the default. */
const WORKLOADS: Workload[] = [
  {},
  { project: 'shop', service: 'api' },
  { project: 'shop', service: 'web' },
  { project: 'other', service: 'api' },
  { labels: { ci: 'true' } },
  { project: 'shop', labels: { ci: 'true' } },
  { service: 'worker', labels: { tier: 'batch' } },
  { service: 'worker', labels: { tier: 'web' } },
  { service: 'legacy' },
  { project: 'admin', service: 'x' },
  { labels: { 'egressfw.policy': 'payments' } },
  { labels: { 'egressfw.policy': 'builds' } },
  { labels: { 'egressfw.policy': 'nosuch' } },
  { labels: { 'egressfw.policy': 'host' } },
  { labels: { 'egressfw.policy': 'web' } },
  { project: 'shop', service: 'api', labels: { 'egressfw.policy': 'builds' } },
  { project: 'app', service: 'frontend' },
  { project: 'app', service: 'worker' },
];

/** A name egressfw allows and Cilium cannot: below a wildcard by more than one label (noted). */
const deeperThanOneLabel = (config: Config, name: string) =>
  [config, ...config.policies].some((l) => l.wildcards.some((w) => name.endsWith(w.name.slice(1)) && name.slice(0, -w.name.length + 1).includes('.')));

describe('export: each exported policy allows what egressfw allows, name by name and port by port', () => {
  for (const name of Object.keys(CONFIGS)) {
    it(name, () => {
      const config = configOf(name);
      const cilium = exported(config, 'cilium');
      const antrea = exported(config, 'antrea');
      const ips = addressesOf(config);
      let compared = 0;
      let agreedAllow = 0;
      for (const w of WORKLOADS) {
        const queries: Query[] = [
          ...namesOf(config).flatMap((n) => [PUBLIC4, PUBLIC6, PRIVATE4, PRIVATE6].flatMap((ip) => portsOf(config).map((p) => ({ dest: { kind: 'name' as const, name: n, ip }, ...p })))),
          ...ips.flatMap((ip) => portsOf(config).map((p) => ({ dest: { kind: 'ip' as const, ip }, ...p }))),
        ];
        for (const q of queries) {
          const e = egressfwAllows(config, w, q);
          const c = ciliumAllows(cilium.objects, w, q);
          const a = antreaAllows(antrea.objects, w, q);
          const what = `${JSON.stringify(w)} ${JSON.stringify(q.dest)} ${q.port}/${q.proto}: egressfw ${e}, cilium ${c}, antrea ${a}`;
          compared++;
          if (e && c && a) agreedAllow++;
          // never wider
          if (c) expect(e, what).toBe(true);
          if (a) expect(e, what).toBe(true);
          // Antrea: the same, exactly
          expect(a, what).toBe(e);
          // Cilium: the same, but for the narrowings its notes announce
          if (e && !c) {
            const d = q.dest;
            const deep = d.kind === 'name' && deeperThanOneLabel(config, d.name);
            const privateAnswer = d.kind === 'name' && (d.ip === PRIVATE4 || d.ip === PRIVATE6);
            expect(deep || privateAnswer, what).toBe(true);
            if (deep) expect(cilium.notes.join('\n')).toContain('one label');
            if (privateAnswer) expect(cilium.notes.join('\n')).toContain('allowPrivate');
          }
        }
      }
      // the comparison covered allowed and refused cases alike
      expect(agreedAllow).toBeGreaterThan(0);
      expect(compared - agreedAllow).toBeGreaterThan(0);
    });
  }

  it('Cilium answers a lookup exactly when the DNS gate would (one-label wildcards aside)', () => {
    const config = configOf('policies');
    const { objects } = exported(config, 'cilium');
    for (const w of WORKLOADS) {
      for (const n of namesOf(config)) {
        const q: Query = { dest: { kind: 'lookup', name: n }, port: 53, proto: 'udp' };
        const e = egressfwAllows(config, w, q);
        const c = ciliumAllows(objects, w, q);
        if (c) expect(e).toBe(true);
        if (e && !c) expect(deeperThanOneLabel(config, n)).toBe(true);
      }
    }
  });

  it('each pod is chosen by exactly one egressfw object (so Cilium, which adds policies up, gives it one policy)', () => {
    const config = configOf('policies');
    const model = buildModel(config, DEFAULT_LABELS);
    for (const w of WORKLOADS) {
      const chosen = model.selections.flatMap((s) => s.terms.filter((t) => termMatches(t, podLabels(w))).map(() => s.policy));
      expect(chosen, JSON.stringify(w)).toHaveLength(1);
    }
  });
});

describe('export: golden output for the two example configs (the README quotes them)', () => {
  for (const [name, file] of [['example', 'export-example'], ['policiesExample', 'export-policies']] as const) {
    for (const engine of ['cilium', 'antrea'] as const) {
      it(`${name} -> ${engine}`, () => golden(`${file}-${engine}.yaml`, exported(configOf(name), engine).text));
    }
  }
});

describe('export: the model', () => {
  it('conjoin simplifies and drops contradictions', () => {
    const t = (...r: Term) => r;
    expect(conjoin(t({ key: 'a', operator: 'In', values: ['1'] }), t({ key: 'a', operator: 'NotIn', values: ['1'] }))).toBeNull();
    expect(conjoin(t({ key: 'a', operator: 'Exists' }), t({ key: 'a', operator: 'DoesNotExist' }))).toBeNull();
    expect(conjoin(t({ key: 'a', operator: 'In', values: ['1'] }), t({ key: 'a', operator: 'NotIn', values: ['2'] }))).toEqual([{ key: 'a', operator: 'In', values: ['1'] }]);
    expect(conjoin(t({ key: 'a', operator: 'NotIn', values: ['2'] }), t({ key: 'a', operator: 'DoesNotExist' }))).toEqual([{ key: 'a', operator: 'DoesNotExist' }]);
    expect(conjoin(t({ key: 'a', operator: 'In', values: ['1'] }), t({ key: 'a', operator: 'In', values: ['2'] }))).toBeNull();
  });

  it('a name glob cannot carry over: said, and the entry is not exported', () => {
    const config = parseConfig(
      `
allow: [{ domain: a.example.com }]
policies: { p: { allow: [{ domain: b.example.com }] } }
containers: { assign: [{ match: { name: "web-*" }, policy: p }] }
`,
      't.yml',
    );
    const model = buildModel(config, DEFAULT_LABELS);
    expect(model.notes.join('\n')).toMatch(/containers\.assign\[0\]: match\.name .* NOT exported/);
    // p stays reachable only through the egressfw.policy label: the glob entry selects nothing
    const p = model.selections.find((s) => s.policy === 'p')!;
    expect(p.terms.length).toBeGreaterThan(0);
    for (const t of p.terms) expect(t).toContainEqual({ key: 'egressfw.policy', operator: 'In', values: ['p'] });
  });

  it('a label value Kubernetes cannot hold is refused the same way; a bad --service-label is a usage error', () => {
    const config = parseConfig(`allow: []\ncontainers: { assign: [{ match: { project: "has space" }, policy: none }] }\n`, 't.yml');
    expect(buildModel(config, DEFAULT_LABELS).notes.join('\n')).toContain('not a valid Kubernetes label value');
    expect(() => buildModel(config, { ...DEFAULT_LABELS, service: 'not a key' })).toThrow(UsageError);
  });

  it('too many overlapping matches to express as selectors: a usage error naming the fix', () => {
    const assign = Array.from({ length: 80 }, (_, i) => `    - match: { project: p${i}, service: s${i}, label: l${i} }\n      policy: host`).join('\n');
    const config = parseConfig(`allow: []\ncontainers:\n  default: none\n  assign:\n${assign}\n`, 't.yml');
    expect(() => buildModel(config, DEFAULT_LABELS)).toThrow(/give the workloads a label per policy/);
  });

  it('the IPv6 guard ranges cover every block the rebinding guard refuses (narrower, never wider)', () => {
    const ranges = guardRanges(true).filter((g) => g.cidr.includes(':'));
    const covered = (c: string) => ranges.some((g) => cidrContains(g.cidr, c) && !(g.except ?? []).some((x) => cidrContains(x, c) || cidrContains(c, x)));
    for (const c of REFUSED_V6_CIDRS) expect(covered(c), c).toBe(true);
  });

  it('no policies: one object selecting every pod of the namespace', () => {
    const { objects } = exported(configOf('example'), 'cilium');
    expect(objects).toHaveLength(1);
    expect(objects[0].spec.endpointSelector).toEqual({});
  });

  it('default none is a default-deny object; an undefined policy gives nothing too', () => {
    const config = configOf('policies');
    const c = exported(config, 'cilium').objects.find((o: any) => o.metadata.name === 'egressfw-none');
    expect(c).toBeDefined();
    for (const r of c.specs ?? [c.spec]) expect(r.egressDeny).toEqual([{ toEntities: ['all'] }]);
    const a = exported(config, 'antrea').objects.find((o: any) => o.metadata.name === 'egressfw-none');
    expect(a.spec.egress).toEqual([{ name: 'default-deny', action: 'Drop' }]);
    expect(egressfwAllows(config, { service: 'legacy' }, { dest: { kind: 'ip', ip: PUBLIC4 }, port: 443, proto: 'tcp' })).toBe(false);
  });
});

describe('egressfw export (command)', () => {
  const run = async (args: Partial<Parameters<typeof runExport>[0]>, files = new Map<string, string>()) => {
    const out: string[] = [];
    const warn: string[] = [];
    const code = await runExport(
      { config: EXAMPLE, to: 'cilium', namespace: 'default', out: '-', clusterWide: false, serviceLabel: DEFAULT_LABELS.service, projectLabel: DEFAULT_LABELS.project, ...args },
      {
        writeText: async (f, t) => void files.set(f, t),
        readText: async (f) => files.get(f) ?? null,
        removeFile: async (f) => void files.delete(f),
        listDir: async (d) => [...files.keys()].filter((f) => path.dirname(f) === d).map((f) => path.basename(f)),
        cwd: '/work/x',
        out: (t) => out.push(t),
        warn: (t) => warn.push(t),
      },
    );
    return { code, out: out.join(''), warn: warn.join('\n'), files };
  };

  it('--out DIR replaces its own files, removes the stale ones it wrote, and never touches a file it did not write', async () => {
    const files = new Map<string, string>();
    await run({ config: POLICIES_EXAMPLE, out: 'k8s' }, files);
    files.set('/work/x/k8s/cilium-egressfw-retired.yaml', '# egressfw 0.1.0 export --to cilium\n---\n');
    files.set('/work/x/k8s/notes.yaml', 'mine');
    const again = await run({ config: EXAMPLE, out: 'k8s' }, files);
    expect([...files.keys()].sort()).toEqual(['/work/x/k8s/cilium-egressfw-host.yaml', '/work/x/k8s/notes.yaml']);
    expect(again.warn).toContain('removed cilium-egressfw-retired.yaml');
    files.set('/work/x/k8s/cilium-egressfw-host.yaml', 'hand-written');
    await expect(run({ config: EXAMPLE, out: 'k8s' }, files)).rejects.toThrow(/not written by egressfw export/);
    expect(files.get('/work/x/k8s/cilium-egressfw-host.yaml')).toBe('hand-written');
  });

  it('prints one document per object, with the notes on stderr and as a comment on top', async () => {
    const r = await run({ config: POLICIES_EXAMPLE, to: 'antrea' });
    expect(r.code).toBe(0);
    const docs = parseAllDocuments(r.out);
    expect(docs.length).toBeGreaterThan(1);
    expect(r.out.split('\n')[0]).toMatch(/^# egressfw .* export --to antrea/);
    expect(r.out).toContain("# - the host's own traffic");
    expect(r.warn).toContain("note: the host's own traffic");
  });

  it('--out DIR writes one file per object and nothing to stdout', async () => {
    const r = await run({ config: POLICIES_EXAMPLE, out: 'k8s' });
    expect(r.out).toBe('');
    expect([...r.files.keys()].every((f) => f.startsWith('/work/x/k8s/cilium-egressfw-'))).toBe(true);
    expect(r.files.size).toBe(parseAllDocuments(exported(parseConfig(readFileSync(POLICIES_EXAMPLE, 'utf8'), 'x'), 'cilium').text).length);
  });

  it('bad --to and --namespace are usage errors (exit 2), before anything is read', async () => {
    await expect(run({ to: 'calico' })).rejects.toThrow(UsageError);
    await expect(run({ namespace: 'Bad_NS' })).rejects.toThrow(/not a Kubernetes namespace/);
  });

  it('text from the config is escaped in the notes and the header comment (no terminal escapes, no forged lines)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'efw-export-'));
    const file = path.join(dir, 'bidi.yml');
    writeFileSync(file, 'allow: [{ domain: a.example.com }]\ncontainers: { assign: [{ match: { project: "shop\u202e\u2028x" }, policy: none }] }\n');
    const r = await run({ config: file });
    rmSync(dir, { recursive: true, force: true });
    expect(r.warn).toContain('\\u202e');
    expect(r.warn).not.toContain('\u202e');
    expect(r.out).not.toContain('\u202e');
    expect(r.out).not.toContain('\u2028');
    for (const line of r.out.split('\n').filter((l) => l.includes('containers.assign[0]'))) expect(line.startsWith('# ')).toBe(true);
  });

  it('a config that does not load is the usual config error', async () => {
    await expect(run({ config: '/nonexistent/egressfw.yml' })).rejects.toThrow(/file not found/);
  });
});
