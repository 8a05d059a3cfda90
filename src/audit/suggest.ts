import { sortPorts } from '../config/load.js';
import { checkDomain } from '../config/name-checks.js';
import type { Port } from '../config/schema.js';
import { compareIp, parseIp } from '../net/ip.js';
import { printable, printLines } from '../text.js';
import { durationText, iso, portText, type Report, type ReportSource } from './report.js';

/**
 * Pure: a report -> an allowlist fragment in the config's own YAML shape, for
 * a person to review and merge. It is printed, never written: egressfw does
 * not edit its config.
 */

export interface SuggestInput {
  report: Report;
  /** the config's domain entries, to say what is already allowed (omit when there is no config) */
  allowed?: { name: string; ports: Port[] }[];
  /** names the DNS gate refused in the window -> source IPs that asked */
  gateRefused?: Map<string, Set<string>>;
}

interface Wanted {
  ports: Map<string, Port>;
  who: Set<string>;
  attempts: number;
  /** the destination IPs, for the "shared address" note */
  ips: Set<string>;
  /** other names the same IPs were answers for (no per-client answer to tell them apart) */
  sharedWith: Set<string>;
}

/** what an allow entry can say */
const ALLOWABLE = new Set(['tcp', 'udp']);

/** "shop/web" for compose services, else the container name; "the host"; "unattributed IP". */
function whoOf(s: ReportSource): string {
  if (s.kind === 'host') return 'the host';
  if (s.kind === 'unknown') return `unattributed ${s.label}`;
  return s.containers.map((c) => (c.project && c.service ? `${c.project}/${c.service}` : c.name)).join(' or ');
}

const yamlPort = (p: Port) => (p.proto === 'tcp' ? String(p.port) : `"${p.port}/${p.proto}"`);
const listOf = (xs: Iterable<string>) => [...new Set(xs)].sort().join(', ');
const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;

/**
 * A name from the network (the gate's log: any bytes a client put in a query) becomes an entry only
 * when it is a hostname the config accepts exactly as it is; anything else is only ever quoted.
 */
const entryName = (name: string): boolean => {
  const c = checkDomain(name);
  return c.ok && c.name === name;
};
/** Names that can never be entries, shown this many at most (quoted, escaped): a flood of junk stays short. */
const MAX_JUNK_SHOWN = 10;

export function renderSuggestion({ report, allowed = [], gateRefused = new Map() }: SuggestInput): string {
  const named = new Map<string, Wanted>();
  const unnamed = new Map<string, Wanted>();
  const other: string[] = [];
  const junk = new Set<string>();
  const want = (m: Map<string, Wanted>, key: string) => {
    let w = m.get(key);
    if (!w) {
      w = { ports: new Map(), who: new Set(), attempts: 0, ips: new Set(), sharedWith: new Set() };
      m.set(key, w);
    }
    return w;
  };
  const byIp = new Map<string, string>(); // source IP -> who, for the gate's refusals
  for (const s of report.sources) {
    const who = whoOf(s);
    for (const ip of s.ips) byIp.set(ip, who);
    for (const d of s.destinations) {
      if (!ALLOWABLE.has(d.proto) || !/^[0-9]+$/.test(d.port) || d.port === '0') {
        other.push(`${portText(d.proto, d.port)} to ${d.dst} from ${who} (${plural(d.count, 'attempt')})`);
        continue;
      }
      const port: Port = { port: Number(d.port), proto: d.proto as Port['proto'] };
      // A name the gate gave this very client beats names from resolution history (which may be shared).
      for (const n of d.names) if (!entryName(n.name)) junk.add(n.name);
      const usable = d.names.filter((n) => entryName(n.name));
      const gate = usable.filter((n) => n.via === 'gate');
      const names = (gate.length ? gate : usable).map((n) => n.name);
      const targets = names.length ? names.map((n) => want(named, n)) : [want(unnamed, d.dst)];
      for (const w of targets) {
        w.ports.set(`${port.proto}:${port.port}`, port);
        w.who.add(who);
        w.attempts += d.count;
        w.ips.add(d.dst);
        for (const n of names) w.sharedWith.add(n);
      }
    }
  }

  const config = new Map(allowed.map((a) => [a.name, a.ports]));
  const out: string[] = [];
  out.push(`# egressfw suggest: from the connections refused or let through by audit mode, ${iso(report.from)} to ${iso(report.to)} (last ${durationText(report.since)}).`);
  out.push('# Review before merging into the `allow:` list of your config: every entry opens a way out.');
  out.push('# egressfw never edits the config itself. Then `egressfw plan`, `egressfw sync`.');
  const entries: string[] = [];
  const alreadyAllowed: string[] = [];
  for (const name of [...named.keys()].sort()) {
    const w = named.get(name)!;
    const ports = sortPorts([...w.ports.values()]);
    const have = config.get(name);
    const missing = have ? ports.filter((p) => !have.some((h) => h.port === p.port && h.proto === p.proto)) : ports;
    const need = `needed by ${listOf(w.who)} (${plural(w.attempts, 'attempt')})`;
    if (!missing.length) {
      alreadyAllowed.push(`#   ${name} (${ports.map((p) => `${p.port}/${p.proto}`).join(', ')}): ${need} to ${listOf([...w.ips].sort(compareIp))}`);
      continue;
    }
    entries.push(`  # ${need}`);
    if (have) entries.push(`  # already allowed on ${have.map((p) => `${p.port}/${p.proto}`).join(', ')}: this adds ${missing.map((p) => `${p.port}/${p.proto}`).join(', ')}`);
    const others = [...w.sharedWith].filter((n) => n !== name).sort();
    if (others.length) entries.push(`  # ${listOf(w.ips)} was also an answer for ${others.join(', ')}: keep the name(s) the app uses`);
    entries.push(`  - domain: ${name}`, `    ports: [${missing.map(yamlPort).join(', ')}]`);
  }
  const candidates: string[] = [];
  for (const ip of [...unnamed.keys()].sort(compareIp)) {
    const w = unnamed.get(ip)!;
    const full = parseIp(ip)!.family === 4 ? 32 : 128;
    candidates.push(`  # needed by ${listOf(w.who)} (${plural(w.attempts, 'attempt')})`);
    candidates.push(`  # - cidr: ${ip}/${full}`, `  #   ports: [${sortPorts([...w.ports.values()]).map(yamlPort).join(', ')}]`);
  }
  out.push(entries.length ? 'allow:' : 'allow: []  # nothing with a known name to add in this window');
  out.push(...entries);
  if (candidates.length) {
    out.push('', '  # No DNS name known for these addresses (not in egressfw\'s resolution history, not answered by the DNS gate;');
    out.push('  # egressfw never asks reverse DNS). An address can change: prefer the name the app uses, if you know it.');
    out.push(...candidates);
  }
  if (alreadyAllowed.length) {
    out.push('', '# Already allowed by name and port, but refused at an address egressfw does not (or no longer) allow for the name:');
    out.push('# the client used an old or different DNS answer (a longer `staleGrace` keeps old addresses longer).', ...alreadyAllowed);
  }
  const suggested = new Set(named.keys());
  for (const name of gateRefused.keys()) if (!entryName(name)) junk.add(name);
  const refused = [...gateRefused.entries()].filter(([name]) => entryName(name) && !suggested.has(name)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (refused.length) {
    out.push('', '# Names the DNS gate refused (no connection could follow, so the port is not known):');
    for (const [name, clients] of refused) {
      const who = [...clients].map((c) => byIp.get(c) ?? c);
      out.push(`#   - domain: ${name}${who.length ? `  # asked by ${listOf(who)}` : ''}`);
    }
  }
  if (other.length) {
    out.push('', '# Not expressible as an allow entry (ports are TCP or UDP):', ...[...new Set(other)].sort().map((o) => `#   ${o}`));
  }
  if (junk.size) {
    const shown = [...junk].sort().slice(0, MAX_JUNK_SHOWN);
    out.push('', `# ${plural(junk.size, 'name')} asked for or answered that ${junk.size === 1 ? 'is not a hostname' : 'are not hostnames'} (never suggested; quoted and escaped here):`);
    for (const n of shown) out.push(`#   ${printable(JSON.stringify(n))}`);
    if (junk.size > shown.length) out.push(`#   ... and ${junk.size - shown.length} more`);
  }
  // Every line escaped on its own: nothing from the network can end a comment and start an entry.
  return printLines(out);
}
