import { describe, expect, it } from 'vitest';
import { checkBackend } from '../../src/system/backend.js';
import type { Exec } from '../../src/system/exec.js';

const DOCKER_SAVE = '*filter\n:FORWARD DROP [0:0]\n:DOCKER - [0:0]\n:DOCKER-USER - [0:0]\nCOMMIT\n';

function fakeExec(version: string, outputs: Record<string, string>): { exec: Exec; calls: string[][] } {
  const calls: string[][] = [];
  const exec: Exec = async (argv) => {
    calls.push([...argv]);
    if (argv[0] === 'iptables' && argv[1] === '-V') return { stdout: version, stderr: '', exitCode: 0 };
    return { stdout: outputs[argv[0]!] ?? '', stderr: '', exitCode: 0 };
  };
  return { exec, calls };
}
const onPath = async () => true;

describe('iptables backend check', () => {
  it('passes when Docker/ufw chains are where `iptables` looks', async () => {
    const { exec, calls } = fakeExec('iptables v1.8.9 (nf_tables)\n', {});
    expect(await checkBackend(exec, onPath, async () => null, ['INPUT', 'DOCKER-USER'])).toBe('nf_tables');
    expect(calls).toEqual([['iptables', '-V']]); // nothing else read
  });

  it('stops when Docker lives in iptables-legacy but `iptables` is nf_tables', async () => {
    const { exec } = fakeExec('iptables v1.8.9 (nf_tables)\n', { 'iptables-legacy-save': DOCKER_SAVE });
    await expect(checkBackend(exec, onPath, async (f) => (f === '/proc/net/ip_tables_names' ? 'filter\nnat\n' : null), ['INPUT'])).rejects.toThrow(
      /backend mismatch: `iptables` is nf_tables, but Docker's or ufw's rules are in iptables-legacy.*update-alternatives --set iptables \/usr\/sbin\/iptables-legacy.*Nothing was changed/,
    );
  });

  it('does not even run iptables-legacy-save when no legacy table is loaded (no module autoload)', async () => {
    const { exec, calls } = fakeExec('iptables v1.8.9 (nf_tables)\n', { 'iptables-legacy-save': DOCKER_SAVE });
    expect(await checkBackend(exec, onPath, async () => null, ['INPUT'])).toBe('nf_tables');
    expect(calls.map((c) => c[0])).toEqual(['iptables']);
  });

  it('stops when Docker lives in nf_tables but `iptables` is legacy', async () => {
    const { exec } = fakeExec('iptables v1.8.9 (legacy)\n', { 'iptables-nft-save': DOCKER_SAVE });
    await expect(checkBackend(exec, onPath, async () => null, ['INPUT'])).rejects.toThrow(/`iptables` is legacy, but .* iptables-nft/);
  });
});
