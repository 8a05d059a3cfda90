// Staying correct over time: the daemon against DNS changes, DNS outages, Docker restarts,
// ufw reloads, hand-made damage and a simulated boot; then uninstall leaves nothing behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { labDescribe } from './requirements.js';
import { snapshotMachineNetwork, startLab, type Lab } from './lab.js';
import { CLI, canonical, efw, kernelState, orderInsensitive, within, writeConfig } from './efw.js';

const isRoot = process.getuid?.() === 0;
const OLD_V4 = '203.0.113.10';
const NEW_V4 = '203.0.113.11';
const V6 = '2001:db8:10::10';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


labDescribe('egressfw over time: daemon, drift repair, status, uninstall', { docker: true }, () => {
  let lab: Lab;
  let machineBefore: string;
  let pristine: string;
  let config: string;
  let configText: string;
  let stateDir: string;
  let daemon: ChildProcess | undefined;
  const logs: string[] = [];
  /** Log lines from `mark` on: each test asserts only on what happened during it, not on earlier tests' lines. */
  const since = (mark: number) => logs.slice(mark);
  /** the daemon repaired something: a drift check did, or a refresh that got there first (every 2 s here) */
  const repairedSince = (mark: number) => since(mark).some((l) => / drift-repaired /.test(l) || / refresh changes=[1-9]/.test(l));
  const measured: Record<string, number> = {};

  const ufwFiles = async () => (await lab.host(['sh', '-c', 'cd /etc && sha256sum ufw/* default/ufw | sort -k2'])).stdout;
  const blockedFromContainer = async () => !(await lab.fetch('http://203.0.113.20/', { container: 'c-user', timeoutSec: 2 })).ok;
  const reaches = async (url: string, container?: string) => (await lab.fetch(url, { timeoutSec: 2, ...(container ? { container } : {}) })).ok;
  const status = async () => {
    const r = await efw(lab, ['status', '--config', config, '--state-dir', stateDir, '--json']);
    return { code: r.exitCode, doc: JSON.parse(r.stdout || '{}'), stderr: r.stderr };
  };

  function startDaemon(): void {
    daemon = spawn(lab.hostArgv([process.execPath, CLI, 'daemon', '--config', config, '--state-dir', stateDir]).at(0)!, lab.hostArgv([process.execPath, CLI, 'daemon', '--config', config, '--state-dir', stateDir]).slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    daemon.stdout!.on('data', (d: Buffer) => logs.push(...d.toString().trim().split('\n')));
    daemon.stderr!.on('data', (d: Buffer) => logs.push(...d.toString().trim().split('\n')));
  }
  async function stopDaemon(): Promise<number | null> {
    if (!daemon) return null;
    const d = daemon;
    daemon = undefined;
    const exited = new Promise<number | null>((r) => d.once('exit', (code) => r(code)));
    d.kill('SIGTERM');
    return exited;
  }

  beforeAll(async () => {
    machineBefore = await snapshotMachineNetwork();
    lab = await startLab({ docker: true, ipv6: true });
    stateDir = `${lab.dir}/state`;
    configText = `allow:
  - domain: allowed.test
    ports: [80]
dns:
  servers: [${lab.dnsServer}]
  timeout: 500ms
  attempts: 1
  minTtl: 1s
  # this suite is the daemon's sync lifecycle; the gate that is on by default under the daemon is gate.test.ts's
  gate:
    enabled: false
  openAcknowledged: true
staleGrace: 8s
schedule:
  refresh: "*/2 * * * * *"
  driftCheck: 1s
  retryMax: 2s
`;
    config = writeConfig(lab, 'egressfw.yml', configText);
    // ufw quirk: the first `ufw enable` leaves ufw6-user-limit half-filled until any reload; reload once
    // so the "before" snapshot is ufw's steady state, not an artefact egressfw's reloads would "fix".
    expect((await lab.host(['sh', '-c', 'ufw --force enable && ufw reload'])).exitCode).toBe(0);
    expect((await lab.docker(['network', 'create', '--ipv6', '--subnet', '2001:db8:1:1::/64', 'appnet'])).exitCode).toBe(0);
    await lab.runContainer({ name: 'c-user', network: 'appnet', args: ['--restart', 'always'] });
    // Docker re-creates its own rules in another order when it restarts (below): compare rules as sets per table.
    pristine = orderInsensitive(canonical(await kernelState(lab))) + (await ufwFiles());
    startDaemon();
    await within(20_000, 'first refresh applied', async () => logs.some((l) => / refresh changes=\d+/.test(l)));
  });

  afterAll(async () => {
    await stopDaemon();
    await lab?.stop();
    if (Object.keys(measured).length) console.log(`measured: ${JSON.stringify(measured)}`);
    if (isRoot) expect(await snapshotMachineNetwork()).toBe(machineBefore);
  });

  it('enforces from the first refresh; status says so', async () => {
    expect(await reaches('http://allowed.test/', 'c-user')).toBe(true);
    expect(await blockedFromContainer()).toBe(true);
    const s = await status();
    expect(s.code, s.stderr).toBe(0);
    expect(s.doc.enforced).toBe(true);
    expect(s.doc.containers).toMatchObject({ table: 'inet egressfw', hook: 'forward priority -1' });
  });

  it('a changed DNS answer: the new IP is allowed at the next refresh, the old one for the grace period, then removed', async () => {
    await lab.setRecords('allowed.test', { A: [NEW_V4], AAAA: [V6] });
    measured.newIpAllowedMs = await within(15_000, 'new IP allowed', () => reaches(`http://${NEW_V4}/`, 'c-user'));
    expect(await reaches(`http://${OLD_V4}/`, 'c-user')).toBe(true); // still in its grace period
    measured.oldIpRemovedMs = await within(25_000, 'old IP removed after grace', async () => !(await reaches(`http://${OLD_V4}/`, 'c-user')));
    expect(await reaches(`http://${NEW_V4}/`, 'c-user')).toBe(true);
  });

  it('DNS down during refreshes: nothing allowed disappears, status reports the failure', async () => {
    const setBefore = (await lab.host(['ipset', 'list', 'egressfw-v4'])).stdout.split('Members:')[1];
    const nftBefore = (await lab.host(['nft', 'list', 'set', 'inet', 'egressfw', 'allow4'])).stdout;
    const mark = logs.length;
    await lab.setDnsUp(false);
    try {
      // No answer (timeout) or an ICMP port-unreachable on the connected socket (network): both are "DNS down".
      const down = (st: string | undefined) => st === 'timeout' || st === 'network';
      await within(15_000, 'a refresh saw the outage', async () => down((await status()).doc.domains?.[0]?.status));
      await sleep(3000); // more failing refreshes
      expect((await lab.host(['ipset', 'list', 'egressfw-v4'])).stdout.split('Members:')[1]).toBe(setBefore);
      expect((await lab.host(['nft', 'list', 'set', 'inet', 'egressfw', 'allow4'])).stdout).toBe(nftBefore);
      expect(await reaches(`http://${NEW_V4}/`, 'c-user')).toBe(true);
      const s = await status();
      expect(s.doc.domains[0].name).toBe('allowed.test');
      expect(down(s.doc.domains[0].status)).toBe(true);
      expect(since(mark).some((l) => /refresh .*warnings=.*allowed\.test: (timeout|network)/.test(l))).toBe(true);
    } finally {
      await lab.setDnsUp(true);
    }
  });

  it('dockerd restarted: containers stay enforced throughout (our table is not Docker\'s to touch)', async () => {
    const t0 = Date.now();
    await lab.restartDocker();
    const ready = Date.now();
    await within(20_000, 'enforced again after docker restart', async () => (await status()).code === 0);
    measured.dockerReadyToEnforcedMs = Date.now() - ready;
    measured.dockerRestartToEnforcedMs = Date.now() - t0;
    await within(20_000, 'container running again', async () => (await lab.docker(['inspect', '-f', '{{.State.Running}}', 'c-user'])).stdout.trim() === 'true');
    expect(await blockedFromContainer()).toBe(true);
    expect(await reaches(`http://${NEW_V4}/`, 'c-user')).toBe(true);
  });

  it('ufw reload: the host stays closed, and allowances are back within the drift interval', async () => {
    expect((await lab.host(['ufw', 'reload'])).exitCode).toBe(0);
    const t0 = Date.now();
    let leaked = false;
    await within(10_000, 'host allowed again after ufw reload', async () => {
      if (await reaches('http://203.0.113.20/')) leaked = true;
      return reaches(`http://${NEW_V4}/`);
    });
    measured.ufwReloadToEnforcedMs = Date.now() - t0;
    expect(leaked).toBe(false);
  });

  it('ufw disable && ufw enable: enforced again within the drift interval', async () => {
    expect((await lab.host(['sh', '-c', 'ufw disable && ufw --force enable'])).exitCode).toBe(0);
    expect(await reaches('http://203.0.113.20/')).toBe(false); // closed straight after enable: the block loads
    measured.ufwReenableToEnforcedMs = await within(10_000, 'host allowed after ufw re-enable', () => reaches(`http://${NEW_V4}/`));
  });

  it('ufw switched off: containers stay enforced and repaired, status says PARTIAL; back to full after ufw enable', async () => {
    const mark = logs.length;
    expect((await lab.host(['ufw', 'disable'])).exitCode).toBe(0);
    await lab.host(['nft', 'flush', 'chain', 'inet', 'egressfw', 'forward']); // damage while ufw is off
    measured.ufwOffContainerRepairMs = await within(10_000, 'container rules repaired with ufw off', () => blockedFromContainer());
    expect(await reaches(`http://${NEW_V4}/`, 'c-user')).toBe(true);
    const s = await status();
    expect(s.code).toBe(3);
    expect(s.doc.warnings.join()).toMatch(/ufw is installed but not active/);
    expect(repairedSince(mark)).toBe(true);
    expect((await lab.host(['ufw', '--force', 'enable'])).exitCode).toBe(0);
    await within(10_000, 'fully enforced again', async () => (await status()).code === 0 && (await reaches(`http://${NEW_V4}/`)));
  });

  it('sets flushed and the chain emptied by hand: repaired', async () => {
    const mark = logs.length;
    await lab.host(['sh', '-c', 'ipset flush egressfw-v4; ipset flush egressfw-v6; nft flush set inet egressfw allow4; nft flush chain inet egressfw forward']);
    measured.handDamageToRepairedMs = await within(10_000, 'repaired', async () => (await status()).code === 0);
    expect(await reaches(`http://${NEW_V4}/`, 'c-user')).toBe(true);
    expect(await blockedFromContainer()).toBe(true);
    expect(repairedSince(mark)).toBe(true);
  });

  it('simulated boot: ufw loads with nothing of egressfw in the kernel, the host is closed, then the boot re-apply enforces', async () => {
    // 0, or 143 when the stop landed in a refresh (every 2 s here), which it aborts and rolls back
    expect([0, 143]).toContain(await stopDaemon());
    expect(logs.at(-1)).toMatch(/ stopped$| interrupted /);
    // what a reboot leaves: no egressfw sets, chains or jumps in the kernel (files and state survive)
    await lab.host([
      'sh',
      '-c',
      `nft delete table inet egressfw
       for t in iptables ip6tables; do $t -F EGRESSFW-HOST; done
       /lib/ufw/ufw-init stop >/dev/null; for t in iptables ip6tables; do $t -X EGRESSFW-HOST; done
       ipset destroy egressfw-v4; ipset destroy egressfw-v6
       ipset destroy egressfw-refused-host-v4; ipset destroy egressfw-refused-host-v6`,
    ]);
    expect((await lab.host(['ipset', 'list', '-n'])).stdout).not.toMatch(/egressfw/);
    const boot = await lab.host(['/lib/ufw/ufw-init', 'start']); // what ufw.service runs at boot
    expect(boot.exitCode, boot.stdout + boot.stderr).toBe(0);
    expect(await reaches(`http://${NEW_V4}/`)).toBe(false); // closed, not open
    expect(await reaches('http://203.0.113.20/')).toBe(false);
    expect((await lab.host(['busybox', 'nslookup', 'allowed.test'])).stdout).toContain(NEW_V4); // DNS is let through
    const offline = await efw(lab, ['sync', '--offline', '--quiet', '--config', config, '--state-dir', stateDir]);
    expect(offline.exitCode, offline.stderr).toBe(0);
    expect(await reaches(`http://${NEW_V4}/`)).toBe(true);
    expect(await reaches(`http://${NEW_V4}/`, 'c-user')).toBe(true);
    expect(await blockedFromContainer()).toBe(true);
    const mark = logs.length;
    startDaemon();
    await within(10_000, 'daemon refresh after boot', async () => since(mark).some((l) => / refresh /.test(l)));
    expect((await status()).code).toBe(0);
  });

  it('SIGHUP re-reads the config; a broken config is refused and the old one kept', async () => {
    const mark = logs.length;
    writeConfig(lab, 'egressfw.yml', 'allow: [{ domain: "bad name" }]\n');
    daemon!.kill('SIGHUP');
    await within(5000, 'reload refused', async () => since(mark).some((l) => / error job=reload .*kept="previous config"/.test(l)));
    expect(await reaches(`http://${NEW_V4}/`, 'c-user')).toBe(true);
  });

  it('uninstall after all of the above: kernel and ufw files as before the first sync', async () => {
    expect([0, 143]).toContain(await stopDaemon());
    writeConfig(lab, 'egressfw.yml', configText);
    const units = await efw(lab, ['install', '--systemd', '--config', config, '--state-dir', stateDir]);
    expect(units.exitCode, units.stderr).toBe(0);
    expect((await lab.host(['ls', '/etc/systemd/system/'])).stdout).toMatch(/egressfw\.service/);
    const r = await efw(lab, ['uninstall', '--config', config, '--state-dir', stateDir]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/nothing of egressfw is left/);
    expect(orderInsensitive(canonical(await kernelState(lab))) + (await ufwFiles())).toBe(pristine);
    expect((await lab.host(['sh', '-c', `ls /etc/systemd/system/ /etc/ufw/ /etc/cron.d/ ${lab.dir} | grep -i egressfw || true`])).stdout).toBe('egressfw.yml\n');
    expect((await lab.host(['ls', stateDir])).exitCode).not.toBe(0);
    const again = await efw(lab, ['uninstall', '--state-dir', stateDir]);
    expect(again.stdout).toMatch(/nothing of egressfw was installed/);
  });
});
