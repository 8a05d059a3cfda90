import type { Family } from '../../src/net/ip.js';
import type { Plan } from '../../src/plan/diff.js';
import type { Observed } from '../../src/plan/observed.js';
import { parseIpsetSave } from '../../src/plan/observed.js';
import { renderIpset, renderIptables } from '../../src/plan/render.js';

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
      return { exists: !!members, entries: parseIpsetSave(save, name), tmpExists: this.sets.has(`${name}-new`) };
    };
    const copy = (m: Map<string, string[]>) => ({ chains: new Map([...m].map(([k, v]) => [k, [...v]])) });
    return {
      readable: true,
      sets: { 4: one(4), 6: one(6) },
      tables: { 4: copy(this.tables[4]), 6: copy(this.tables[6]) },
      ufw: { ...this.ufw, files: { ...this.ufw.files } },
    };
  }
}
