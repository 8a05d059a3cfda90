import { PreconditionError } from '../errors.js';
import type { Exec } from './exec.js';

/**
 * Docker and ufw must use the same iptables backend as egressfw, or our
 * rules land in tables that their traffic never crosses. `iptables -V` says
 * which one `iptables` is; the other backend is checked for Docker or ufw
 * chains. Reading legacy state goes through /proc, which never loads a module.
 */
export async function checkBackend(
  exec: Exec,
  onPath: (cmd: string) => Promise<boolean>,
  readText: (file: string) => Promise<string | null>,
  ourChains: Iterable<string>,
): Promise<string> {
  const v = await exec(['iptables', '-V']);
  const backend = /nf_tables/.test(v.stdout) ? 'nf_tables' : /legacy/.test(v.stdout) ? 'legacy' : 'unknown';
  const ours = [...ourChains].some((c) => c.startsWith('DOCKER') || c.startsWith('ufw-'));
  if (ours || backend === 'unknown') return backend;
  let other = '';
  if (backend === 'nf_tables') {
    const names = await readText('/proc/net/ip_tables_names');
    if (names && /filter/.test(names) && (await onPath('iptables-legacy-save'))) other = (await exec(['iptables-legacy-save', '-t', 'filter'])).stdout;
  } else if (await onPath('iptables-nft-save')) {
    other = (await exec(['iptables-nft-save', '-t', 'filter'])).stdout;
  }
  if (/^:(DOCKER|ufw-)/m.test(other)) {
    const want = backend === 'nf_tables' ? 'legacy' : 'nft';
    throw new PreconditionError(
      `iptables backend mismatch: \`iptables\` is ${backend}, but Docker's or ufw's rules are in iptables-${want}. ` +
        `Make them agree (e.g. \`update-alternatives --set iptables /usr/sbin/iptables-${want}\` and the same for ip6tables, then restart docker and ufw), and retry. Nothing was changed.`,
    );
  }
  return backend;
}
