import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { buildDesired } from '../../src/plan/desired.js';
import { diff } from '../../src/plan/diff.js';
import { rollbackIpset, rollbackIptables, rollbackUfw } from '../../src/plan/rollback.js';
import type { Observed } from '../../src/plan/observed.js';
import type { AllowedDomain } from '../../src/resolve/merge.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { fixture } from '../support/files.js';

const config = parseConfig('allow: [{ domain: api.example.com }]\ndns: { servers: [198.51.100.53] }', 'x');
const dns = [{ host: '198.51.100.53', port: 53 }];
const allowed = (ip: string): AllowedDomain[] => [{ name: 'api.example.com', status: 'ok', detail: '', ips: [{ ip, family: 4, source: 'answer', until: 0 }] }];

function kernel(): FakeKernel {
  const k = new FakeKernel();
  k.ufw.files = { 4: fixture('before.rules'), 6: fixture('before6.rules') };
  k.tables[4].set('DOCKER-USER', ['-A DOCKER-USER -j RETURN']);
  k.tables[4].set('FORWARD', ['-A FORWARD -j DOCKER-USER']);
  return k;
}

function rollBack(k: FakeKernel, plan: ReturnType<typeof diff>, before: Observed): void {
  for (const f of [6, 4] as const) {
    const t = rollbackIptables(plan, before, f);
    if (t) k.iptablesRestore(f, t);
  }
  const u = rollbackUfw(plan, before);
  for (const file of u?.files ?? []) k.ufw.files[file.file.includes('6') ? 6 : 4] = file.text;
  for (const cmd of u?.commands ?? []) if (cmd[1] === 'default') k.ufw.outputPolicy = { allow: 'ACCEPT', deny: 'DROP', reject: 'REJECT' }[cmd[2]!]!;
  for (const s of rollbackIpset(plan, before)) {
    if (s.restore) k.ipsetRestore(s.restore);
    else k.ipsetRestore(`destroy ${s.name}`);
  }
}

const comparable = (o: Observed) => ({ sets: o.sets, t4: [...o.tables[4].chains], t6: [...o.tables[6].chains], ufw: o.ufw });

describe('rollback', () => {
  it('undoes a first sync completely: no set, chain, jump or ufw change is left', () => {
    const k = kernel();
    const before = k.observe();
    const plan = diff(buildDesired(config, allowed('203.0.113.1'), dns), before);
    k.apply(plan);
    rollBack(k, plan, before);
    const after = k.observe();
    // EGRESSFW-HOST stays as an empty chain (ufw may still hook it): the only allowed difference.
    for (const f of [4, 6] as const) {
      expect(after.tables[f].chains.get('EGRESSFW-HOST')).toEqual([]);
      after.tables[f].chains.delete('EGRESSFW-HOST');
    }
    expect(comparable(after)).toEqual(comparable(before));
  });

  it('undoes a later sync: old set members, old rules and old jump positions come back', () => {
    const k = kernel();
    k.apply(diff(buildDesired(config, allowed('203.0.113.1'), dns), k.observe()));
    // Docker pushed our jump down; the next sync would move it and change the set.
    k.tables[4].get('DOCKER-USER')!.unshift('-A DOCKER-USER -j OTHER');
    const before = k.observe();
    const plan = diff(buildDesired(parseConfig('allow: [{ domain: api.example.com, ports: [8443] }]\ndns: { servers: [198.51.100.53] }', 'x'), allowed('203.0.113.2'), dns), before);
    expect(plan.ops.map((o) => o.kind)).toEqual(['set', 'jump']);
    k.apply(plan);
    expect(k.tables[4].get('DOCKER-USER')![0]).toContain('egressfw jump');
    rollBack(k, plan, before);
    expect(comparable(k.observe())).toEqual(comparable(before));
  });
});
