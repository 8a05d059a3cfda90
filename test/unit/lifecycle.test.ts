import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { buildDesired } from '../../src/plan/desired.js';
import { diff } from '../../src/plan/diff.js';
import { planUninstall } from '../../src/plan/uninstall.js';
import { renderBootService, renderCron, renderService, unsafePath } from '../../src/schedule/units.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { fixture, golden } from '../support/files.js';

const paths = { node: '/usr/bin/node', cli: '/opt/egressfw/dist/cli.js', config: '/etc/egressfw/egressfw.yml', stateDir: '/var/lib/egressfw' };

describe('install: cron file and systemd units', () => {
  it('renders the cron file (golden) with a lock so runs never pile up', () => {
    const text = renderCron(paths, '*/5 * * * *');
    expect(text).toContain('*/5 * * * * root flock -n /run/egressfw.cron.lock /usr/bin/node /opt/egressfw/dist/cli.js sync --quiet');
    golden('egressfw.cron', text);
  });

  it('renders the units (golden): daemon restarted with docker, boot re-apply before docker', () => {
    const service = renderService(paths);
    const boot = renderBootService(paths);
    expect(service).toMatch(/^PartOf=docker\.service$/m);
    expect(service).toMatch(/^ExecStart=\/usr\/bin\/node \/opt\/egressfw\/dist\/cli\.js daemon /m);
    expect(boot).toMatch(/^Before=docker\.service/m);
    expect(boot).toMatch(/^RequiredBy=docker\.service$/m);
    expect(boot).toMatch(/sync --offline --quiet/);
    golden('egressfw.service', service);
    golden('egressfw-boot.service', boot);
  });

  it('refuses paths that a shell or systemd would interpret', () => {
    for (const p of ['/etc/egress fw.yml', '/etc/x;reboot', 'relative/path', '/etc/$(id)', '/a/../b', '/etc/x\nExecStart=/bin/sh']) expect(unsafePath(p)).toBe(true);
    expect(unsafePath('/etc/egressfw/egressfw.yml')).toBe(false);
  });
});

describe('uninstall plan', () => {
  const config = parseConfig('allow: [{ domain: api.example.com }]\ndns: { servers: [198.51.100.53] }', 'x');
  const dns = [{ host: '198.51.100.53', port: 53 }];

  function installed() {
    const k = new FakeKernel();
    k.ufw.files = { 4: fixture('before.rules'), 6: fixture('before6.rules') };
    k.tables[4].set('DOCKER-USER', ['-A DOCKER-USER -j RETURN']);
    k.tables[4].set('FORWARD', ['-A FORWARD -j DOCKER-USER']);
    const before = k.observe();
    k.apply(diff(buildDesired(config, [{ name: 'api.example.com', status: 'ok', detail: '', ips: [{ ip: '203.0.113.1', family: 4, source: 'answer', until: 0 }] }], dns), before));
    return { k, before };
  }

  it('removes jumps, chains, sets and the ufw block, and restores the policy', () => {
    const { k, before } = installed();
    const plan = planUninstall(k.observe(), { ufwOutputPolicy: 'ACCEPT', ufwEnabled: true, createdChains: ['DOCKER-USER/6'] });
    expect(plan.nft).toBe('delete table inet egressfw\n');
    k.nftScript(plan.nft!);
    for (const f of [4, 6] as const) if (plan.iptables[f]) k.iptablesRestore(f, plan.iptables[f]!);
    for (const file of plan.ufw!.files) k.ufw.files[file.file.endsWith('6.rules') ? 6 : 4] = file.text;
    for (const f of [4, 6] as const) if (plan.iptablesAfterUfw[f]) k.iptablesRestore(f, plan.iptablesAfterUfw[f]!);
    for (const s of plan.ipsetDestroy) k.ipsetRestore(`destroy ${s}`);
    expect(plan.ufw!.commands).toEqual([['ufw', 'default', 'allow', 'outgoing']]); // it reloads ufw itself
    const after = k.observe();
    expect([...after.tables[4].chains]).toEqual([...before.tables[4].chains]);
    expect([...after.tables[6].chains]).toEqual([...before.tables[6].chains]);
    expect(after.sets).toEqual(before.sets);
    expect(after.ufw!.files).toEqual(before.ufw!.files);
  });

  it('removes a pre-0.2 install too; keeps a DOCKER-USER that Docker uses, even if egressfw created it first', () => {
    const { k } = installed();
    k.tables[6].set('EGRESSFW', ['-A EGRESSFW -j RETURN']);
    k.tables[6].set('DOCKER-USER', ['-A DOCKER-USER -m comment --comment "egressfw jump" -j EGRESSFW']);
    expect(planUninstall(k.observe(), { createdChains: ['DOCKER-USER/6'] }).iptables[6]).toContain('-X DOCKER-USER');
    k.tables[6].get('DOCKER-USER')!.push('-A DOCKER-USER -j RETURN');
    const plan = planUninstall(k.observe(), { createdChains: ['DOCKER-USER/6'] });
    expect(plan.iptables[6]).not.toContain('-X DOCKER-USER');
    k.iptablesRestore(6, plan.iptables[6]!);
    expect(k.tables[6].has('EGRESSFW')).toBe(false);
    expect(k.tables[6].get('DOCKER-USER')).toEqual(['-A DOCKER-USER -j RETURN']);
  });

  it('disables ufw again only if egressfw enabled it', () => {
    const { k } = installed();
    expect(planUninstall(k.observe(), { ufwOutputPolicy: 'ACCEPT', ufwEnabled: false }).ufw!.commands).toContainEqual(['ufw', '--force', 'disable']);
  });

  it('on a clean machine there is nothing to do', () => {
    const k = new FakeKernel();
    k.ufw.files = { 4: fixture('before.rules'), 6: fixture('before6.rules') };
    const plan = planUninstall(k.observe(), undefined);
    expect(plan.steps).toEqual([]);
    expect(plan.ufw).toBeNull();
  });
});
