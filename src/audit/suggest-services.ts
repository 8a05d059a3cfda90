/**
 * `egressfw suggest --per-service` (issue 18): one policy per compose service (per container
 * name outside compose) from what audit mode recorded, plus the containers.assign entries that
 * select them. Pure; printed for a person to review, never written.
 */
import { sortPorts } from '../config/load.js';
import type { Port } from '../config/schema.js';
import { compareIp, parseIp } from '../net/ip.js';
import { durationText, iso, type Report } from './report.js';

interface ServicePolicy {
  name: string;
  match: string;
  names: Map<string, Map<string, Port>>;
  ips: Map<string, Map<string, Port>>;
  gateRefused: Set<string>;
}

/** A policy name from a service or container name: lowercase letters, digits and "-", a letter first, at most 24. */
export function policyNameFor(text: string, taken: Set<string>): string {
  let base = text.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^[^a-z]+/, '').replace(/-+$/, '').slice(0, 20).replace(/-+$/, '') || 'svc';
  if (base === 'host' || base === 'none') base = `${base}-svc`;
  let name = base;
  for (let i = 2; taken.has(name); i++) name = `${base}-${i}`;
  taken.add(name);
  return name;
}

const yamlPort = (p: Port) => (p.proto === 'tcp' ? String(p.port) : `"${p.port}/${p.proto}"`);
const q = (s: string) => JSON.stringify(s);

export function renderPerService({ report, gateRefused = new Map() }: { report: Report; gateRefused?: Map<string, Set<string>> }): string {
  const byKey = new Map<string, ServicePolicy>();
  const taken = new Set<string>();
  const ipOwner = new Map<string, ServicePolicy>();
  for (const s of report.sources) {
    // one container per source only: an address that changed hands cannot be given to either
    if (s.kind !== 'container' || s.containers.length !== 1) continue;
    const c = s.containers[0]!;
    const key = c.project && c.service ? `svc:${c.project}/${c.service}` : `name:${c.name}`;
    let p = byKey.get(key);
    if (!p) {
      p = {
        name: policyNameFor(c.project && c.service ? `${c.project}-${c.service}` : c.name, taken),
        match: c.project && c.service ? `{ project: ${q(c.project)}, service: ${q(c.service)} }` : `{ name: ${q(c.name)} }`,
        names: new Map(),
        ips: new Map(),
        gateRefused: new Set(),
      };
      byKey.set(key, p);
    }
    for (const ip of s.ips) ipOwner.set(ip, p);
    for (const d of s.destinations) {
      if ((d.proto !== 'tcp' && d.proto !== 'udp') || !/^[0-9]+$/.test(d.port) || d.port === '0') continue;
      const port: Port = { port: Number(d.port), proto: d.proto };
      const gate = d.names.filter((n) => n.via === 'gate');
      const names = (gate.length ? gate : d.names).map((n) => n.name);
      const into = (m: Map<string, Map<string, Port>>, k: string) => (m.get(k) ?? m.set(k, new Map()).get(k)!).set(`${port.proto}:${port.port}`, port);
      if (names.length) for (const n of names) into(p.names, n);
      else into(p.ips, d.dst);
    }
  }
  for (const [name, clients] of gateRefused) for (const c of clients) ipOwner.get(c)?.gateRefused.add(name);
  const out = [
    `# egressfw suggest --per-service: one policy per compose service, from ${iso(report.from)} to ${iso(report.to)} (last ${durationText(report.since)}).`,
    '# Review before merging into your config: every entry opens a way out, for that service only.',
    '# The host and containers not listed keep what `containers.default` gives them. egressfw never edits the config itself.',
  ];
  const policies = [...byKey.values()].sort((a, b) => a.name.localeCompare(b.name));
  if (!policies.length) return `${out.join('\n')}\npolicies: {}  # no container refusals with a known service in this window\n`;
  out.push('policies:');
  for (const p of policies) {
    out.push(`  ${p.name}:`, '    allow:');
    const names = [...p.names.keys()].sort();
    if (!names.length) out.push('      []  # no name known for what it reached (see the addresses below)');
    for (const n of names) out.push(`      - domain: ${n}`, `        ports: [${sortPorts([...p.names.get(n)!.values()]).map(yamlPort).join(', ')}]`);
    for (const ip of [...p.ips.keys()].sort(compareIp)) {
      out.push(`      # - cidr: ${ip}/${parseIp(ip)!.family === 4 ? 32 : 128}  # no DNS name known for it`, `      #   ports: [${sortPorts([...p.ips.get(ip)!.values()]).map(yamlPort).join(', ')}]`);
    }
    for (const n of [...p.gateRefused].sort()) out.push(`      # - domain: ${n}  # the DNS gate refused it (no connection followed: port unknown)`);
  }
  out.push('containers:', '  assign:');
  for (const p of policies) out.push(`    - policy: ${p.name}`, `      match: ${p.match}`);
  return `${out.join('\n')}\n`;
}
