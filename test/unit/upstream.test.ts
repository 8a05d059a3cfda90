import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { PreconditionError } from '../../src/errors.js';
import { dnsServers, resolverOptions, upstreamHosts } from '../../src/resolve/upstream.js';
import { ufwPolicyWord } from '../../src/plan/ufw-file.js';
import type { QueryFn } from '../../src/resolve/query.js';

// One place says which DNS servers egressfw asks (sync, plan, status, daemon, gate, proxy, install --docker-dns).
describe('upstream DNS servers', () => {
  const resolvConf = (text: string | null) => async (f: string) => (f === '/etc/resolv.conf' ? text : null);

  it('the configured servers, else /etc/resolv.conf', async () => {
    const withServers = parseConfig('dns: {servers: [198.51.100.53], port: 5353}\n', 'x.yml');
    const without = parseConfig('dns: {port: 5353}\n', 'x.yml');
    expect(await upstreamHosts(withServers, resolvConf('nameserver 203.0.113.53\n'))).toEqual({ hosts: ['198.51.100.53'], from: 'dns.servers' });
    expect(await upstreamHosts(without, resolvConf('nameserver 203.0.113.53\n'))).toEqual({ hosts: ['203.0.113.53'], from: '/etc/resolv.conf' });
    expect(await dnsServers(without, resolvConf('nameserver 203.0.113.53\n'))).toEqual([{ host: '203.0.113.53', port: 5353 }]);
    expect(await upstreamHosts(without, resolvConf(null))).toEqual({ hosts: [], from: '/etc/resolv.conf' });
    const none = dnsServers(without, resolvConf('search example\n'));
    await expect(none).rejects.toBeInstanceOf(PreconditionError);
    await expect(none).rejects.toThrow(/set `dns\.servers` in the config/);
  });

  it('maps the dns section to resolver options', () => {
    const c = parseConfig('dns: {servers: [198.51.100.53], timeout: 900ms, attempts: 3, concurrency: 7, minTtl: 11, maxTtl: 600, maxAddresses: 9, deadline: 5s}\nipv6: false\n', 'x.yml');
    const query = (async () => ({})) as unknown as QueryFn;
    expect(resolverOptions(c, [{ host: '198.51.100.53', port: 53 }], query)).toEqual({
      query,
      servers: [{ host: '198.51.100.53', port: 53 }],
      timeoutMs: 900,
      attempts: 3,
      concurrency: 7,
      minTtl: 11,
      maxTtl: 600,
      ipv6: false,
      maxAddresses: 9,
      deadlineMs: 5000,
    });
  });

  it("ufw's word for a policy", () => {
    expect(['ACCEPT', 'DROP', 'REJECT', 'bogus'].map(ufwPolicyWord)).toEqual(['allow', 'deny', 'reject', 'allow']);
  });
});
