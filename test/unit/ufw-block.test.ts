import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { buildDesired, ufwBlock } from '../../src/plan/desired.js';
import { diff } from '../../src/plan/diff.js';
import { extractBlock } from '../../src/plan/observed.js';
import { planUninstall } from '../../src/plan/uninstall.js';
import { removeBlock, upsertBlock } from '../../src/plan/ufw-file.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { fixture } from '../support/files.js';

// The marked block in before.rules is found by its marker lines. A stray marker must never make
// egressfw replace or delete the user's own rules between the markers.
const config = parseConfig('allow: [{ domain: api.example.com }]\ndns: { servers: [198.51.100.53] }', 'x');
const dns = [{ host: '198.51.100.53', port: 53 }];
const desired = () => buildDesired(config, [{ name: 'api.example.com', status: 'ok', detail: '', ips: [{ ip: '203.0.113.1', family: 4, source: 'answer', until: 0 }] }], dns);
const SSH = '-A ufw-before-input -p tcp --dport 22 -j ACCEPT';

/** stock before.rules with our block near COMMIT, plus `extra` inserted after line `after` (1-based) */
function rulesWith(extra: string[], after = 17): string {
  const lines = upsertBlock(fixture('before.rules'), ufwBlock(4, dns, undefined, true))!.split('\n');
  lines.splice(after, 0, ...extra);
  return lines.join('\n');
}

function observedWith(text4: string) {
  const k = new FakeKernel();
  k.ufw.files = { 4: text4, 6: upsertBlock(fixture('before6.rules'), ufwBlock(6, dns, undefined, true))! };
  return k.observe();
}

describe('ufw before.rules: exactly one well-formed egressfw block', () => {
  it('a stray "# BEGIN EGRESSFW" above the user\'s SSH rule: sync and uninstall stop, naming the file and line', () => {
    const text = rulesWith(['# BEGIN EGRESSFW', SSH]);
    expect(text.split('\n')[17]).toBe('# BEGIN EGRESSFW'); // line 18
    const observed = observedWith(text);
    expect(() => diff(desired(), observed)).toThrow(/\/etc\/ufw\/before\.rules lines 18, /);
    expect(() => planUninstall(observed, { ufwOutputPolicy: 'ACCEPT', ufwEnabled: true })).toThrow(/\/etc\/ufw\/before\.rules lines 18, /);
    expect(() => extractBlock(text, 'before.rules')).toThrow(/2 "# BEGIN EGRESSFW"/);
  });

  it('the SSH rule is never dropped by any text egressfw would write', () => {
    // with only a stray BEGIN (no block of ours yet), the first sync must not treat it as our block either
    const stray = fixture('before.rules').replace('# End required lines\n', `# End required lines\n# BEGIN EGRESSFW\n${SSH}\n`);
    const observed = observedWith(stray);
    expect(() => diff(desired(), observed)).toThrow(/before\.rules.*line 18.*"# BEGIN EGRESSFW" without "# END EGRESSFW"/s);
    expect(() => removeBlock(stray)).toThrow();
  });

  it('a user rule inside our block (hand edit) is refused, naming its line', () => {
    const block = ufwBlock(4, dns, undefined, true).split('\n');
    block.splice(2, 0, SSH);
    const text = upsertBlock(fixture('before.rules'), ufwBlock(4, dns, undefined, true))!.replace(ufwBlock(4, dns, undefined, true), block.join('\n'));
    const line = text.split('\n').indexOf(SSH) + 1;
    expect(() => extractBlock(text, '/etc/ufw/before.rules')).toThrow(new RegExp(`/etc/ufw/before\\.rules line ${line}: .*not written by egressfw`));
  });

  it('END before BEGIN, and an END alone, are refused', () => {
    const block = ufwBlock(4, dns, undefined, true);
    const swapped = fixture('before.rules').replace(/\nCOMMIT\n$/, `\n# END EGRESSFW\n${SSH}\n${block.split('\n')[0]}\nCOMMIT\n`);
    expect(() => extractBlock(swapped, 'f')).toThrow(/^f line 75: "# END EGRESSFW" comes before "# BEGIN EGRESSFW" \(line 77\)/);
    const endOnly = fixture('before.rules').replace(/\nCOMMIT\n$/, '\n# END EGRESSFW\nCOMMIT\n');
    expect(() => extractBlock(endOnly, 'f')).toThrow(/^f line 75: "# END EGRESSFW" without "# BEGIN EGRESSFW"/);
  });

  it('one well-formed block is found, replaced and removed as before', () => {
    const stock = fixture('before.rules');
    const once = upsertBlock(stock, ufwBlock(4, dns, undefined, true))!;
    expect(extractBlock(once, 'f')).toBe(ufwBlock(4, dns, undefined, true));
    expect(extractBlock(stock, 'f')).toBeNull();
    expect(removeBlock(once)).toBe(stock);
    const plan = diff(desired(), observedWith(once));
    expect(plan.ops.some((o) => o.kind === 'ufw-block' && o.family === 4)).toBe(false);
  });
});

describe('the ping6 refusal (ufw before6.rules accepts echo-request out, ahead of our jump)', () => {
  const block = (mode: 'enforce' | 'audit', f: 4 | 6 = 6) => ufwBlock(f, dns, undefined, true, mode).split('\n');
  it('enforce: inserted at the top of ufw6-before-output, echo-request only, loopback left to ufw', () => {
    const ping = block('enforce').filter((l) => l.startsWith('-I '));
    expect(ping).toEqual(['-I ufw6-before-output 1 ! -o lo -p ipv6-icmp -m icmp6 --icmpv6-type 128 -m comment --comment "egressfw ping6" -j REJECT --reject-with icmp6-adm-prohibited']);
    // what sync writes reads back as its own block (the observer accepts this one insert)
    const text = upsertBlock(fixture('before6.rules'), block('enforce').join('\n'))!;
    expect(extractBlock(text, 'before6.rules')).toBe(block('enforce').join('\n'));
  });
  it('audit mode and IPv4 have none (audit refuses nothing; ufw before.rules accepts no echo-request out)', () => {
    expect(block('audit').some((l) => l.startsWith('-I '))).toBe(false);
    expect(block('enforce', 4).some((l) => l.startsWith('-I '))).toBe(false);
    expect(fixture('before.rules')).not.toMatch(/ufw-before-output.*echo-request/);
    expect(fixture('before6.rules')).toMatch(/-A ufw6-before-output -p icmpv6 --icmpv6-type echo-request -j ACCEPT/);
  });
  it('any other insert inside the block is a hand edit: refused', () => {
    const b = block('enforce');
    const other = b.map((l) => (l.startsWith('-I ') ? l.replace('--icmpv6-type 128', '--icmpv6-type 135') : l)).join('\n');
    const text = upsertBlock(fixture('before6.rules'), other)!;
    expect(() => extractBlock(text, 'before6.rules')).toThrow(/not written by egressfw/);
  });
});
