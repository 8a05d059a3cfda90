import ipaddr from 'ipaddr.js';
import { parseConntrackSave } from '../../src/plan/flows.js';
import type { Family } from '../../src/net/ip.js';
import type { Plan } from '../../src/plan/diff.js';
import type { Observed } from '../../src/plan/observed.js';
import { parseIpsetSave } from '../../src/plan/observed.js';
import { renderIpset, renderIptables, renderNft } from '../../src/plan/render.js';
import { canonicalElement, type NftObserved } from '../../src/plan/nft.js';
import { NFT_CHAIN_SPEC } from '../../src/plan/kernel-names.js';

interface FakeNftTable {
  sets: Map<string, Set<string>>;
  chain: { type: string; hook: string; prio: number; policy: string } | null;
  rules: { text: string; comment: string }[];
  /** the DNS gate's base chains */
  gate?: Map<string, { spec: { type: string; hook: string; prio: number; policy: string }; rules: { text: string; comment: string }[] }>;
  /** per-workload policies: regular chains pol-* and the verdict maps ("addr : jump chain") */
  policyChains?: Map<string, { text: string; comment: string }[]>;
  maps?: Map<string, Map<string, string>>;
}

/** `type nat hook prerouting priority dstnat - 5; policy accept;` -> spec as nft -j lists it */
function chainSpec(decl: string): { type: string; hook: string; prio: number; policy: string } {
  const m = /type (\S+) hook (\S+) priority (\S+)(?: ([+-]) (\d+))?; policy (\S+);/.exec(decl)!;
  const base = { dstnat: -100, filter: 0 }[m[3]! as 'filter'] ?? Number(m[3]);
  return { type: m[1]!, hook: m[2]!, prio: base + (m[4] === '-' ? -Number(m[5]) : Number(m[5] ?? 0)), policy: m[6]! };
}

/**
 * A model of the kernel that executes the text egressfw renders, the way
 * ipset restore and iptables-restore --noflush would. Used to prove that
 * applying a plan and planning again gives an empty plan.
 */
export class FakeKernel {
  sets = new Map<string, Set<string>>();
  setFamily = new Map<string, Family>();
  tables: Record<Family, Map<string, string[]>> = {
    4: new Map([['FORWARD', []], ['OUTPUT', []]]),
    6: new Map([['FORWARD', []], ['OUTPUT', []]]),
  };
  ufw = { enabled: true, outputPolicy: 'ACCEPT', files: { 4: '', 6: '' } as Record<Family, string> };
  /** egressfw's nft table (inet egressfw), or null */
  nft: FakeNftTable | null = null;
  /** tracked connections, as `conntrack -L -o save` prints them */
  conntrack: string[] = [];
  /** `ip -j -d addr show` */
  ifaces: unknown[] = [{ ifname: 'lo', addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8 }] }];

  /** `conntrack -R FILE` with -D lines: each is a filter (-s with --mask-src, -d, -r, -p, --dport, ICMP type and code), as conntrack reads it. */
  conntrackDelete(input: string): string {
    const opt = (t: string[], k: string) => (t.includes(k) ? t[t.indexOf(k) + 1] : undefined);
    const filters = input.split('\n').filter((l) => l.startsWith('-D ')).map((l) => l.split(/\s+/));
    const matches = (t: string[], line: string) => {
      const f = parseConntrackSave(`${line}\n`).flows[0];
      if (!f) return false;
      const s = opt(t, '-s')!;
      const mask = opt(t, '--mask-src');
      const srcOk = mask ? ipaddr.parse(f.src).match(ipaddr.parse(s), ipaddr.parse(mask).prefixLengthFromSubnetMask()!) : f.src === s;
      const k = f.proto === 'icmpv6' ? '--icmpv6' : '--icmp';
      return (
        srcOk && f.dst === opt(t, '-d') && f.replySrc === (opt(t, '-r') ?? f.replySrc) && f.proto === opt(t, '-p') &&
        (opt(t, '--dport') === undefined || String(f.dport) === opt(t, '--dport')) &&
        (opt(t, `${k}-type`) === undefined || String(f.icmp?.type) === opt(t, `${k}-type`))
      );
    };
    const deleted = this.conntrack.filter((l) => filters.some((t) => matches(t, l)));
    this.conntrack = this.conntrack.filter((l) => !deleted.includes(l));
    return deleted.map((l) => `${l}\n`).join('');
  }

  /** What a ufw (re)load does to egressfw's host chain: declared afresh from the marked block. */
  ufwReload(): void {
    if (!this.ufw.enabled) return;
    for (const f of [4, 6] as Family[]) {
      const lines = this.ufw.files[f].split('\n');
      if (!lines.some((l) => l.startsWith(':EGRESSFW-HOST '))) continue;
      this.tables[f].set('EGRESSFW-HOST', lines.filter((l) => l.startsWith('-A EGRESSFW-HOST ')));
    }
  }

  /** `nft -f -` with the text egressfw renders; all or nothing, like the real transaction. */
  nftScript(text: string): void {
    let t: FakeNftTable | null = this.nft && {
      sets: new Map([...this.nft.sets].map(([k, v]) => [k, new Set(v)])),
      chain: this.nft.chain,
      rules: [...this.nft.rules],
      gate: new Map([...(this.nft.gate ?? [])].map(([k, v]) => [k, { spec: v.spec, rules: [...v.rules] }])),
      policyChains: new Map([...(this.nft.policyChains ?? [])].map(([k, v]) => [k, [...v]])),
      maps: new Map([...(this.nft.maps ?? [])].map(([k, v]) => [k, new Map(v)])),
    };
    const jumpsTo = (chain: string) => [...(t?.maps ?? new Map<string, Map<string, string>>()).values()].some((m) => [...m.values()].includes(chain));
    const need = () => {
      if (!t) throw new Error('nft: No such file or directory (table)');
      return t;
    };
    for (const line of text.trim().split('\n')) {
      let m: RegExpExecArray | null;
      if (line === 'add table inet egressfw') t ??= { sets: new Map(), chain: null, rules: [] };
      else if (line === 'delete table inet egressfw') {
        need();
        t = null;
      } else if ((m = /^add set inet egressfw (\S+) \{/.exec(line))) {
        if (!need().sets.has(m[1]!)) t!.sets.set(m[1]!, new Set());
      } else if (/^add chain inet egressfw forward \{/.test(line)) need().chain ??= { ...NFT_CHAIN_SPEC };
      else if ((m = /^flush set inet egressfw (\S+)$/.exec(line))) {
        const s = need().sets.get(m[1]!);
        if (!s) throw new Error(`nft: no set ${m[1]}`);
        s.clear();
      } else if ((m = /^add map inet egressfw (\S+) \{/.exec(line))) {
        const maps = (need().maps ??= new Map());
        if (!maps.has(m[1]!)) maps.set(m[1]!, new Map());
      } else if ((m = /^delete map inet egressfw (\S+)$/.exec(line))) {
        if (t?.rules.some((r) => r.text.includes(`@${m![1]}`))) throw new Error(`nft: map ${m[1]} in use (Device or resource busy)`);
        if (!need().maps?.delete(m[1]!)) throw new Error(`nft: no map ${m[1]}`);
      } else if ((m = /^delete set inet egressfw (\S+)$/.exec(line))) {
        if ([...(t?.policyChains?.values() ?? [])].some((rs) => rs.some((r) => r.text.includes(`@${m![1]} `)))) throw new Error(`nft: set ${m[1]} in use`);
        if (!need().sets.delete(m[1]!)) throw new Error(`nft: no set ${m[1]}`);
      } else if ((m = /^add element inet egressfw (policy[46]) \{ (.*) \}$/.exec(line))) {
        const map = need().maps?.get(m[1]!);
        if (!map) throw new Error(`nft: no map ${m[1]}`);
        for (const e of m[2]!.split(', ')) {
          const [addr, verdict] = e.split(' : ');
          const chain = verdict!.replace(/^jump /, '');
          if (!t!.policyChains?.has(chain)) throw new Error(`nft: no chain ${chain}`);
          const key = canonicalElement(addr!);
          if (map.has(key) && map.get(key) !== chain) throw new Error(`nft: element ${key} exists`);
          map.set(key, chain);
        }
      } else if ((m = /^delete element inet egressfw (policy[46]) \{ (.*) \}$/.exec(line))) {
        const map = need().maps?.get(m[1]!);
        if (!map) throw new Error(`nft: no map ${m[1]}`);
        for (const e of m[2]!.split(', ')) if (!map.delete(canonicalElement(e))) throw new Error(`nft: no element ${e}`);
      } else if ((m = /^add chain inet egressfw (pol-\S+)$/.exec(line))) {
        const pc = (need().policyChains ??= new Map());
        if (!pc.has(m[1]!)) pc.set(m[1]!, []);
      } else if ((m = /^flush chain inet egressfw (pol-\S+)$/.exec(line))) {
        if (!need().policyChains?.has(m[1]!)) throw new Error(`nft: no chain ${m[1]}`);
        t!.policyChains!.set(m[1]!, []);
      } else if ((m = /^delete chain inet egressfw (pol-\S+)$/.exec(line))) {
        if (jumpsTo(m[1]!)) throw new Error(`nft: chain ${m[1]} in use (Device or resource busy)`);
        if (!need().policyChains?.delete(m[1]!)) throw new Error(`nft: no chain ${m[1]}`);
      } else if ((m = /^add rule inet egressfw (pol-\S+) (.*) comment "(.*)"$/.exec(line))) {
        const c = need().policyChains?.get(m[1]!);
        if (!c) throw new Error(`nft: no chain ${m[1]}`);
        c.push({ text: m[2]!, comment: m[3]! });
      } else if ((m = /^add element inet egressfw (\S+) \{ (.*) \}$/.exec(line))) {
        const s = need().sets.get(m[1]!);
        if (!s) throw new Error(`nft: no set ${m[1]}`);
        for (const e of m[2]!.split(', ')) s.add(canonicalElement(e));
      } else if (line === 'flush chain inet egressfw forward') {
        if (!need().chain) throw new Error('nft: no chain');
        t!.rules = [];
      } else if ((m = /^add rule inet egressfw forward (.*) comment "(.*)"$/.exec(line))) {
        if (!need().chain) throw new Error('nft: no chain');
        t!.rules.push({ text: m[1]!, comment: m[2]! });
      } else if ((m = /^add chain inet egressfw (gate-\S+)(?: \{ (.*) \})?$/.exec(line))) {
        const g = (need().gate ??= new Map());
        if (!g.has(m[1]!)) g.set(m[1]!, { spec: chainSpec(m[2] ?? ''), rules: [] });
      } else if ((m = /^flush chain inet egressfw (gate-\S+)$/.exec(line))) {
        const c = need().gate?.get(m[1]!);
        if (!c) throw new Error(`nft: no chain ${m[1]}`);
        c.rules = [];
      } else if ((m = /^delete chain inet egressfw (gate-\S+)$/.exec(line))) {
        if (!need().gate?.delete(m[1]!)) throw new Error(`nft: no chain ${m[1]}`);
      } else if ((m = /^add rule inet egressfw (gate-\S+) (.*) comment "(.*)"$/.exec(line))) {
        const c = need().gate?.get(m[1]!);
        if (!c) throw new Error(`nft: no chain ${m[1]}`);
        c.rules.push({ text: m[2]!, comment: m[3]! });
      } else throw new Error(`nft: cannot parse ${line}`);
    }
    this.nft = t;
  }

  /** `nft -j -f -` with a batch from restoreBatch(). */
  nftJson(text: string): void {
    let t: FakeNftTable | null = this.nft;
    for (const cmd of (JSON.parse(text) as { nftables: Record<string, Record<string, Record<string, unknown>>>[] }).nftables) {
      const [verb, obj] = Object.entries(cmd)[0]!;
      const [kind, body] = Object.entries(obj)[0]!;
      if (verb === 'add' && kind === 'table') t ??= { sets: new Map(), chain: null, rules: [] };
      else if (verb === 'delete' && kind === 'table') t = null;
      else if (verb === 'add' && kind === 'set') t!.sets.set(String(body.name), new Set(((body.elem as string[]) ?? []).map(canonicalElement)));
      else if (verb === 'add' && kind === 'chain' && String(body.name).startsWith('pol-')) (t!.policyChains ??= new Map()).set(String(body.name), []);
      else if (verb === 'add' && kind === 'rule' && String(body.chain).startsWith('pol-')) t!.policyChains!.get(String(body.chain))!.push({ text: String(body.expr), comment: String(body.comment) });
      else if (verb === 'add' && kind === 'map') {
        if (![...(t!.policyChains?.keys() ?? [])].length && (body.elem as unknown[] | undefined)?.length) throw new Error('nft json: map members jump to chains not yet added');
        (t!.maps ??= new Map()).set(String(body.name), new Map(((body.elem as [string, { jump: { target: string } }][]) ?? []).map(([k, v]) => [canonicalElement(k), v.jump.target])));
      } else if (verb === 'add' && kind === 'chain' && String(body.name).startsWith('gate-'))
        (t!.gate ??= new Map()).set(String(body.name), { spec: { type: String(body.type), hook: String(body.hook), prio: Number(body.prio), policy: String(body.policy) }, rules: [] });
      else if (verb === 'add' && kind === 'chain') t!.chain = { type: String(body.type), hook: String(body.hook), prio: Number(body.prio), policy: String(body.policy) };
      else if (verb === 'add' && kind === 'rule' && String(body.chain).startsWith('gate-')) t!.gate!.get(String(body.chain))!.rules.push({ text: String(body.expr), comment: String(body.comment) });
      else if (verb === 'add' && kind === 'rule') t!.rules.push({ text: String(body.expr), comment: String(body.comment) });
      else throw new Error(`nft json: cannot do ${verb} ${kind}`);
    }
    this.nft = t;
  }

  observeNft(): NftObserved | null {
    const t = this.nft;
    if (!t) return null;
    const raw: unknown[] = [{ table: { family: 'inet', name: 'egressfw' } }];
    for (const [name, s] of t.sets) raw.push({ set: { family: 'inet', table: 'egressfw', name, elem: [...s] } });
    if (t.chain) raw.push({ chain: { family: 'inet', table: 'egressfw', name: 'forward', ...t.chain } });
    for (const r of t.rules) raw.push({ rule: { family: 'inet', table: 'egressfw', chain: 'forward', expr: r.text, comment: r.comment } });
    for (const [name, c] of t.gate ?? []) {
      raw.push({ chain: { family: 'inet', table: 'egressfw', name, ...c.spec } });
      for (const r of c.rules) raw.push({ rule: { family: 'inet', table: 'egressfw', chain: name, expr: r.text, comment: r.comment } });
    }
    for (const [name, m] of t.maps ?? []) raw.push({ map: { family: 'inet', table: 'egressfw', name, elem: [...m].map(([k, c]) => [k, { jump: { target: c } }]) } });
    for (const [name, rules] of t.policyChains ?? []) {
      raw.push({ chain: { family: 'inet', table: 'egressfw', name } });
      for (const r of rules) raw.push({ rule: { family: 'inet', table: 'egressfw', chain: name, expr: r.text, comment: r.comment } });
    }
    const gateChains = new Map([...(t.gate ?? [])].map(([k, v]) => [k, { spec: { ...v.spec }, ruleComments: v.rules.map((r) => r.comment) }]));
    return {
      chain: t.chain ? { ...t.chain } : null, ruleComments: t.rules.map((r) => r.comment), gateChains, sets: new Map([...t.sets].map(([k, v]) => [k, [...v].sort()])), raw,
      policyChains: new Map([...(t.policyChains ?? [])].map(([k, v]) => [k, v.map((r) => r.comment)])),
      maps: new Map([...(t.maps ?? [])].map(([k, v]) => [k, [...v].map(([a, c]) => `${a} : jump ${c}`).sort()])),
    };
  }

  ipsetRestore(text: string): void {
    for (const line of text.trim().split('\n')) {
      const [cmd, name, ...rest] = line.split(' ');
      if (cmd === 'create') {
        if (this.sets.has(name!)) throw new Error(`ipset: set ${name} exists`);
        this.sets.set(name!, new Set());
        this.setFamily.set(name!, rest.includes('inet6') ? 6 : 4);
      } else if (cmd === 'add') this.sets.get(name!)!.add(rest[0]!);
      else if (cmd === 'swap') {
        const a = this.sets.get(name!)!;
        this.sets.set(name!, this.sets.get(rest[0]!)!);
        this.sets.set(rest[0]!, a);
      } else if (cmd === 'destroy') {
        if (!this.sets.delete(name!)) throw new Error(`ipset: no set ${name}`);
      } else throw new Error(`ipset: unknown ${line}`);
    }
  }

  iptablesRestore(family: Family, text: string): void {
    const t = this.tables[family];
    for (const line of text.trim().split('\n')) {
      if (line === '*filter' || line === 'COMMIT') continue;
      const decl = /^:(\S+) /.exec(line);
      if (decl) {
        t.set(decl[1]!, []);
        continue;
      }
      const fx = /^(-F|-X) (\S+)$/.exec(line);
      if (fx) {
        if (!t.has(fx[2]!)) throw new Error(`iptables: no chain ${fx[2]}`);
        if (fx[1] === '-F') t.set(fx[2]!, []);
        else if (t.get(fx[2]!)!.length) throw new Error(`iptables: chain ${fx[2]} busy`);
        else if ([...t.values()].some((rules) => rules.some((r) => r.endsWith(`-j ${fx[2]}`)))) throw new Error(`iptables: chain ${fx[2]} referenced`);
        else t.delete(fx[2]!);
        continue;
      }
      const m = /^(-A|-D|-I) (\S+)(?: ([0-9]+))? (-.*)$/.exec(line)!;
      const chain = t.get(m[2]!);
      if (!chain) throw new Error(`iptables: no chain ${m[2]}`);
      const rule = `-A ${m[2]} ${m[4]}`;
      if (m[1] === '-A') chain.push(rule);
      else if (m[1] === '-I') {
        const at = Number(m[3] ?? 1) - 1;
        if (at > chain.length) throw new Error('iptables: Index of insertion too big');
        chain.splice(at, 0, rule);
      } else {
        const i = chain.indexOf(rule);
        if (i < 0) throw new Error(`iptables: no rule ${rule}`);
        chain.splice(i, 1);
      }
    }
  }

  apply(plan: Plan): void {
    const ipset = renderIpset(plan);
    if (ipset) this.ipsetRestore(ipset);
    for (const op of plan.ops) {
      if (op.kind === 'ufw-block') this.ufw.files[op.family] = op.text;
      if (op.kind === 'ufw-outgoing') this.ufw.outputPolicy = op.to === 'deny' ? 'DROP' : 'REJECT';
      if (op.kind === 'ufw-enable') this.ufw.enabled = true;
    }
    const nft = renderNft(plan);
    if (nft) this.nftScript(nft);
    for (const f of [4, 6] as Family[]) {
      const text = renderIptables(plan, f);
      if (text) this.iptablesRestore(f, text);
    }
  }

  observe(): Observed {
    const one = (f: Family) => {
      const name = f === 4 ? 'egressfw-v4' : 'egressfw-v6';
      const members = this.sets.get(name);
      const save = members ? [...members].map((e) => `add ${name} ${e}`).join('\n') : '';
      return { exists: !!members, entries: parseIpsetSave(save, name), tmpExists: this.sets.has(`${name}-new`), recordExists: this.sets.has(`egressfw-refused-host-v${f}`) };
    };
    const copy = (m: Map<string, string[]>) => ({ chains: new Map([...m].map(([k, v]) => [k, [...v]])) });
    return {
      readable: true,
      sets: { 4: one(4), 6: one(6) },
      tables: { 4: copy(this.tables[4]), 6: copy(this.tables[6]) },
      nft: this.observeNft(),
      ufw: { ...this.ufw, files: { ...this.ufw.files } },
    };
  }
}

