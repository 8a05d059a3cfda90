// Audit mode, the record of refused connections, `report` and `suggest` (issue 12), against a real kernel, ufw and
// dockerd inside the namespaced lab. Needs egressfw's own nftables table (containers) and the host's record sets.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { labDescribe } from './requirements.js';
import { snapshotMachineNetwork, startLab, type Lab } from './lab.js';
import { efw, writeConfig } from './efw.js';

const isRoot = process.getuid?.() === 0;

const BLOCKED_V4 = '203.0.113.20';
const BLOCKED_V6 = '2001:db8:20::20';
const OTHER_V4 = '203.0.113.30';

interface ReportDoc {
  sources: {
    kind: string;
    label: string;
    ips: string[];
    containers: { name: string; state: string; project: string | null }[];
    destinations: { ip: string; proto: string; port: string; names: { name: string }[]; count: number; refused: number; audited: number }[];
  }[];
  notes: string[];
}

labDescribe('audit mode, report and suggest (real kernel, ufw, dockerd)', { docker: true }, () => {
  let lab: Lab;
  let machineBefore: string;
  let stateDir: string;
  let config: string;
  let base: Record<string, unknown>;
  const write = (doc: Record<string, unknown>) => {
    config = writeConfig(lab, 'egressfw.yml', toYaml(doc));
  };
  const sync = () => efw(lab, ['sync', '--config', config, '--state-dir', stateDir]);
  const report = async (since = '1h'): Promise<ReportDoc> => {
    const r = await efw(lab, ['report', '--state-dir', stateDir, '--since', since, '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as ReportDoc;
  };
  const source = (doc: ReportDoc, label: string) => doc.sources.find((s) => s.label === label);
  const dest = (doc: ReportDoc, label: string, ip: string, port: string) => source(doc, label)?.destinations.find((d) => d.ip === ip && d.port === port && d.proto === 'tcp');

  beforeAll(async () => {
    machineBefore = await snapshotMachineNetwork();
    lab = await startLab({ docker: true, ipv6: true });
    stateDir = `${lab.dir}/state`;
    base = {
      mode: 'audit',
      allow: [{ domain: 'allowed.test', ports: [443] }],
      dns: { servers: [lab.dnsServer, lab.dnsServer6], timeout: '1s', minTtl: '5s' },
    };
    write(base);
    const up = await Promise.all([lab.host(['ufw', '--force', 'enable']), lab.docker(['network', 'create', '--ipv6', '--subnet', '2001:db8:1:1::/64', 'usernet'])]);
    for (const r of up) expect(r.exitCode, r.stderr).toBe(0);
    await Promise.all([lab.runContainer({ name: 'auditee' }), lab.runContainer({ name: 'on-usernet', network: 'usernet' })]);
    const s = await sync();
    expect(s.exitCode, s.stderr).toBe(0);
  });

  afterAll(async () => {
    await lab?.stop();
    if (isRoot) expect(await snapshotMachineNetwork()).toBe(machineBefore);
  });

  it('audit lets a not-allowed destination through (IPv4, IPv6, host), and the report names the container after it exited', async () => {
    const [v4, v6, host] = await Promise.all([
      lab.fetch(`http://${BLOCKED_V4}/`, { container: 'auditee' }),
      lab.fetch(`http://[${BLOCKED_V6}]/`, { container: 'auditee' }),
      lab.fetch(`http://${BLOCKED_V4}/`),
    ]);
    expect(v4.body).toMatch(/name=blocked\.test/);
    expect(v6.body).toMatch(/name=blocked\.test/);
    expect(host.body).toMatch(/name=blocked\.test/);
    // a collection while it runs (the daemon's Docker snapshots do this every 5 s), then it exits
    await report();
    expect((await lab.docker(['stop', '-t', '1', 'auditee'])).exitCode).toBe(0);
    const doc = await report();
    const c = source(doc, 'auditee');
    expect(c?.kind).toBe('container');
    expect(c?.containers[0]?.state).toBe('exited');
    for (const ip of [BLOCKED_V4, BLOCKED_V6]) expect(dest(doc, 'auditee', ip, '80'), `auditee -> ${ip}:80 in ${JSON.stringify(doc)}`).toMatchObject({ audited: 1, refused: 0 });
    expect(dest(doc, 'host', BLOCKED_V4, '80')).toMatchObject({ audited: 1 });
    // the text report says the same for people
    const text = await efw(lab, ['report', '--state-dir', stateDir]);
    expect(text.stdout).toMatch(/container auditee \(image busybox:latest; id [0-9a-f]{12}; exited\)/);
  });

  it('a container on a user network is attributed too', async () => {
    const r = await lab.fetch(`http://${OTHER_V4}/`, { container: 'on-usernet' });
    expect(r.body).toMatch(/name=other\.test/);
    const doc = await report();
    expect(dest(doc, 'on-usernet', OTHER_V4, '80')).toMatchObject({ count: 1, audited: 1 });
    expect(source(doc, 'on-usernet')?.ips.some((ip) => ip.startsWith('198.51.100.'))).toBe(true);
  });

  it('switching to enforce blocks the destination, and the report counts the refused attempt', async () => {
    write({ ...base, mode: 'enforce' });
    const s = await sync();
    expect(s.exitCode, s.stderr).toBe(0);
    const [c, host] = await Promise.all([lab.fetch(`http://${OTHER_V4}/`, { container: 'on-usernet', timeoutSec: 3 }), lab.fetch(`http://${OTHER_V4}/`, { timeoutSec: 3 })]);
    expect(c.ok).toBe(false);
    expect(c.ms).toBeLessThan(2500); // rejected, not timed out
    expect(host.ok).toBe(false);
    const doc = await report();
    expect(dest(doc, 'on-usernet', OTHER_V4, '80')).toMatchObject({ count: 2, audited: 1, refused: 1 });
    expect(dest(doc, 'host', OTHER_V4, '80')?.refused).toBeGreaterThanOrEqual(1);
  });

  it('suggest output merged into the config lets the container through', async () => {
    // allowed.test is allowed on 443 only: 8080 is refused, and named from egressfw's own resolution history
    const before = await lab.fetch('http://allowed.test:8080/', { container: 'on-usernet', timeoutSec: 3 });
    expect(before.ok).toBe(false);
    const sug = await efw(lab, ['suggest', '--config', config, '--state-dir', stateDir, '--since', '1h']);
    expect(sug.exitCode, sug.stderr).toBe(0);
    expect(sug.stdout).toMatch(/# already allowed on 443\/tcp: this adds 8080\/tcp\n {2}- domain: allowed\.test\n {4}ports: \[8080\]/);
    const fragment = parseYaml(sug.stdout) as { allow: Record<string, unknown>[] };
    write({ ...base, mode: 'enforce', allow: [...(base.allow as unknown[]), ...fragment.allow] });
    const s = await sync();
    expect(s.exitCode, s.stderr).toBe(0);
    const after = await lab.fetch('http://allowed.test:8080/', { container: 'on-usernet' });
    expect(after.body).toMatch(/port=8080 name=allowed\.test/);
  });

  it('uninstall removes every recording set and chain', async () => {
    const u = await efw(lab, ['uninstall', '--state-dir', stateDir]);
    expect(u.exitCode, u.stderr).toBe(0);
    const [sets, nft, v4, v6] = await Promise.all([lab.host(['ipset', 'list', '-n']), lab.host(['nft', 'list', 'tables']), lab.host(['iptables-save']), lab.host(['ip6tables-save'])]);
    expect(sets.stdout).not.toMatch(/egressfw/);
    expect(nft.stdout).not.toMatch(/egressfw/);
    expect(v4.stdout + v6.stdout).not.toMatch(/EGRESSFW|egressfw/);
    expect((await lab.host(['ls', stateDir])).exitCode).not.toBe(0);
  });
});
