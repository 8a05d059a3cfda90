import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runInstall, type InstallDeps } from '../../src/commands/install.js';
import { ABSENT_MARK, DAEMON_JSON, DAEMON_JSON_BACKUP, dockerDnsStatus, planDockerDns, undoDockerDns } from '../../src/gate/docker-dns.js';

describe('daemon.json dns for the gate', () => {
  it('writes the upstream resolvers (not loopback ones), keeping the other keys, with a backup', () => {
    const p = planDockerDns('{"log-driver": "journald"}', ['127.0.0.53', '192.0.2.53']);
    expect(p).toMatchObject({ action: 'write', backup: '{"log-driver": "journald"}' });
    expect(JSON.parse((p as { text: string }).text)).toEqual({ 'log-driver': 'journald', dns: ['192.0.2.53'] });
    expect(planDockerDns(null, ['192.0.2.53'])).toMatchObject({ action: 'write', backup: ABSENT_MARK });
  });

  it('nothing to change when dns is already set to reachable servers; an error naming the fix otherwise', () => {
    expect(planDockerDns('{"dns": ["192.0.2.1"]}', ['192.0.2.53'])).toMatchObject({ action: 'nothing', message: expect.stringMatching(/^nothing to change/) });
    expect(planDockerDns('{"dns": ["127.0.0.1"]}', ['192.0.2.53'])).toMatchObject({ action: 'write' });
    expect(planDockerDns(null, ['127.0.0.53'])).toMatchObject({ action: 'error', message: expect.stringMatching(/set dns\.servers/) });
    expect(planDockerDns('{"dns": [', ['192.0.2.53'])).toMatchObject({ action: 'error', message: expect.stringMatching(/not valid JSON/) });
  });

  it('undo puts dns back as it was and keeps later changes; a file egressfw created goes away', () => {
    const now = JSON.stringify({ dns: ['192.0.2.53'], 'log-driver': 'local' });
    expect(JSON.parse(undoDockerDns(now, '{"dns": ["198.51.100.1"]}')!.text!)).toEqual({ dns: ['198.51.100.1'], 'log-driver': 'local' });
    expect(JSON.parse(undoDockerDns(now, ABSENT_MARK)!.text!)).toEqual({ 'log-driver': 'local' });
    expect(undoDockerDns('{"dns": ["192.0.2.53"]}', ABSENT_MARK)).toEqual({ text: null });
    expect(undoDockerDns(now, null)).toBeNull();
  });

  it('status: through the gate with daemon.json dns or Docker before 27', () => {
    const plain = { hostRedirect: true, policies: false };
    expect(dockerDnsStatus('{"dns": ["192.0.2.53"]}', '28.5.2', plain)).toMatchObject({ throughGate: true });
    expect(dockerDnsStatus(null, '20.10.24', plain)).toMatchObject({ throughGate: true });
    // 27+ from the host's namespace: the host's redirect catches it; that is the containers' list too without policies
    expect(dockerDnsStatus(null, '28.5.2+dfsg4', plain)).toMatchObject({ throughGate: true, detail: expect.stringMatching(/host's redirect/) });
    // with policies the host's list is not the container's: not good enough
    expect(dockerDnsStatus(null, '29.7.2', { hostRedirect: true, policies: true })).toMatchObject({ throughGate: false, detail: expect.stringMatching(/not by each container's policy.*install --docker-dns/) });
    expect(dockerDnsStatus('{"dns": ["192.0.2.53"]}', '29.7.2', { hostRedirect: true, policies: true })).toMatchObject({ throughGate: true });
    // no host redirect (host.enabled false): around the gate
    expect(dockerDnsStatus(null, '28.5.2+dfsg4', { hostRedirect: false, policies: false })).toMatchObject({ throughGate: false, detail: expect.stringMatching(/around the gate.*install --docker-dns/) });
    expect(dockerDnsStatus(null, null, { hostRedirect: false, policies: false })).toMatchObject({ throughGate: false });
  });

  it('install --docker-dns writes once, then says nothing to change (exit 0)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'efw-dd-'));
    const cfg = path.join(dir, 'c.yml');
    fs.writeFileSync(cfg, 'dns: {servers: [192.0.2.53], gate: {enabled: true}}\n');
    const files = new Map<string, string>([[DAEMON_JSON, '{"iptables": true}']]);
    const outs: string[] = [];
    const deps = {
      exec: async () => ({ stdout: '', stderr: '', exitCode: 0 }),
      readText: async (f: string) => files.get(f) ?? null,
      writeFileAtomic: async (f: string, t: string) => void files.set(f, t),
      isRoot: true,
      systemdRunning: async () => false, removeFile: async () => {},
      node: '/usr/bin/node',
      cli: '/x/cli.js',
      out: (t: string) => void outs.push(t),
    } satisfies InstallDeps;
    const opts = { config: cfg, stateDir: dir, cron: false, systemd: false, remove: false, dryRun: false, dockerDns: true };
    expect(await runInstall(opts, deps)).toBe(0);
    expect(JSON.parse(files.get(DAEMON_JSON)!)).toEqual({ iptables: true, dns: ['192.0.2.53'] });
    expect(files.get(DAEMON_JSON_BACKUP)).toBe('{"iptables": true}');
    expect(outs.join('')).toMatch(/Restart Docker/);
    expect(await runInstall(opts, deps)).toBe(0);
    expect(outs.at(-1)).toMatch(/^nothing to change/);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
