// Connections opened before a sync that its rules refuse stop at the sync (issue 21 item 10); allowed ones and
// a published port's connection go on. Real kernel, conntrack, ufw and dockerd in the namespaced lab.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { efw, writeConfig } from './efw.js';
import { labDescribe } from './requirements.js';
import { ADDR, snapshotMachineNetwork, startLab, waitForLine, type Lab } from './lab.js';

const PEER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'flow-peer.mjs');
const isRoot = process.getuid?.() === 0;
const ALLOWED = '203.0.113.10';
const BLOCKED = '203.0.113.20';
const TCP = 7000; // the peers' TCP echo; UDP echo on 7001

labDescribe('connections opened before a sync (real kernel, conntrack, ufw, dockerd)', { docker: true }, () => {
  let lab: Lab;
  let machineBefore: string;
  const children: ChildProcess[] = [];

  /** Start flow-peer.mjs in a network namespace (nsenter --net); stopped by pid in afterAll. */
  async function peer(netns: string, args: string[]): Promise<void> {
    const child = spawn('nsenter', [`--net=${netns}`, '--', process.execPath, PEER, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    await waitForLine(child, /ready/, 10_000, `flow-peer ${args.join(' ')}`);
  }
  const containerNetns = async (name: string) => `/proc/${(await lab.docker(['inspect', '-f', '{{.State.Pid}}', name])).stdout.trim()}/ns/net`;
  const out = (name: string) => path.join(lab.dir, `flow-${name}`);
  const replies = (name: string) => Number(fs.readFileSync(out(name), 'utf8') || '0');
  /** What a client logged (errors, a closed connection): in the assertion, so a failure says why. */
  const clientLog = (name: string) => (fs.existsSync(`${out(name)}.log`) ? fs.readFileSync(`${out(name)}.log`, 'utf8').trim() : '');
  const growing = async (names: string[], ms = 1500) => {
    const before = names.map(replies);
    await new Promise((r) => setTimeout(r, ms));
    return Object.fromEntries(names.map((n, i) => [n, replies(n) - before[i]!]));
  };

  beforeAll(async () => {
    machineBefore = await snapshotMachineNetwork();
    lab = await startLab({ docker: true });
    expect((await lab.host(['ufw', '--force', 'enable'])).exitCode).toBe(0); // outgoing allowed: egressfw not there yet
    await lab.runContainer({ name: 'c1' });
    // a published port whose server echoes (busybox nc, one cat per connection)
    await lab.runContainer({ name: 'c-echo', args: ['-p', '8000:80'], cmd: ['nc', '-ll', '-p', '80', '-e', 'cat'] });
    await peer(lab.inetNetns, ['server', String(TCP), ALLOWED, BLOCKED]);
    const c1 = await containerNetns('c1');
    // the echo container's nc must listen before the long-lived client connects through the published port
    await peer(lab.inetNetns, ['probe', ADDR.hostUplink4, '8000']);
    // Before egressfw: every flow is open and gets replies.
    await Promise.all([
      peer(lab.hostNetns, ['client', 'tcp', BLOCKED, String(TCP), out('host-tcp-blocked')]),
      peer(lab.hostNetns, ['client', 'udp', BLOCKED, String(TCP + 1), out('host-udp-blocked')]),
      peer(lab.hostNetns, ['client', 'tcp', ALLOWED, String(TCP), out('host-tcp-allowed')]),
      peer(c1, ['client', 'tcp', BLOCKED, String(TCP), out('c1-tcp-blocked')]),
      peer(c1, ['client', 'udp', BLOCKED, String(TCP + 1), out('c1-udp-blocked')]),
      peer(c1, ['client', 'tcp', ALLOWED, String(TCP), out('c1-tcp-allowed')]),
      peer(c1, ['client', 'udp', ALLOWED, String(TCP + 1), out('c1-udp-allowed')]),
      peer(lab.inetNetns, ['client', 'tcp', ADDR.hostUplink4, '8000', out('published')]),
    ]);
  });

  afterAll(async () => {
    for (const c of children) if (c.pid && c.exitCode === null) c.kill('SIGKILL');
    await lab?.stop();
    if (isRoot) expect(await snapshotMachineNetwork()).toBe(machineBefore);
  });

  const ALL = ['host-tcp-blocked', 'host-udp-blocked', 'host-tcp-allowed', 'c1-tcp-blocked', 'c1-udp-blocked', 'c1-tcp-allowed', 'c1-udp-allowed', 'published'];

  it('before sync, every flow gets replies', async () => {

    const g = await growing(ALL);
    // EFW_CAPTURE=DIR: record what the unit test's lab fixtures were taken from
    if (process.env.EFW_CAPTURE) {
      fs.writeFileSync(`${process.env.EFW_CAPTURE}/lab-conntrack-save.txt`, (await lab.host(['conntrack', '-L', '-o', 'save'])).stdout);
      fs.writeFileSync(`${process.env.EFW_CAPTURE}/lab-ip-addr.json`, (await lab.host(['ip', '-j', '-d', 'addr', 'show'])).stdout);
    }
    for (const n of ALL) expect([n, g[n]! > 3, clientLog(n)]).toEqual([n, true, '']);
  });

  it('sync cuts the refused host and container flows and says how many; allowed flows and the published port go on', async () => {
    const config = writeConfig(lab, 'egressfw.yml', `allow:\n  - domain: allowed.test\n    ports: [${TCP}, "${TCP + 1}/udp"]\ndns:\n  servers: [${lab.dnsServer}]\nipv6: false\n`);
    const r = await efw(lab, ['sync', '--config', config, '--state-dir', `${lab.dir}/state`, '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { applied: string[]; flowsCut: { host: number; containers: number; tracked: number } };
    expect(doc.applied.length).toBeGreaterThan(0);
    // host: the TCP and UDP flows to the refused address; containers: the same two from c1
    expect(doc.flowsCut).toMatchObject({ host: 2, containers: 2 });
    await new Promise((r) => setTimeout(r, 500)); // replies already on their way; a retransmission after ufw's reload
    const g = await growing(ALL, 2000);
    for (const n of ['host-tcp-blocked', 'host-udp-blocked', 'c1-tcp-blocked', 'c1-udp-blocked']) expect([n, g[n]]).toEqual([n, 0]);
    for (const n of ['host-tcp-allowed', 'c1-tcp-allowed', 'c1-udp-allowed', 'published']) expect([n, g[n]! > 3]).toEqual([n, true]);
    // what is left in conntrack towards the refused address is only what the rules refused since (no reply)
    const left = await lab.host(['conntrack', '-L', '-d', BLOCKED]);
    expect(left.stdout).not.toMatch(/ASSURED/);
  });

  it('a sync with nothing to apply cuts nothing and the allowed flows still go on', async () => {
    const config = path.join(lab.dir, 'egressfw.yml');
    const r = await efw(lab, ['sync', '--config', config, '--state-dir', `${lab.dir}/state`]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/no changes/);
    const g = await growing(['host-tcp-allowed', 'c1-tcp-allowed', 'published'], 800);
    for (const n of Object.keys(g)) expect([n, g[n]! > 2]).toEqual([n, true]);
  });
});
