import type { Family } from '../net/ip.js';
import { FAMILIES, NFT, SET, UFW_FILE } from '../plan/kernel-names.js';
import { parseNftList, type NftObserved } from '../plan/nft.js';
import { nothingInstalled, parseIpsetNames, parseIptablesSave, parseUfwDefaults, parseUfwEnabled, setState, type Observed } from '../plan/observed.js';
import { CommandError } from '../errors.js';
import type { Exec } from './exec.js';
import { findFirewalld, type FirewalldProcess } from './firewalld.js';

export interface ObserveDeps {
  exec: Exec;
  readText: (file: string) => Promise<string | null>;
  onPath: (cmd: string) => Promise<boolean>;
  isRoot: boolean;
}

export interface Observation {
  observed: Observed;
  missingTools: string[];
  /** a firewalld daemon in this network namespace (unsupported), if any */
  firewalld?: FirewalldProcess | null;
}

const SAVE = { 4: 'iptables-save', 6: 'ip6tables-save' } as const;

async function must(exec: Exec, argv: string[]): Promise<string> {
  const r = await exec(argv);
  if (r.exitCode !== 0) throw new CommandError(argv, r.exitCode, r.stderr);
  return r.stdout;
}

export interface Wanted {
  /** the host part is managed: ufw is needed */
  ufw: boolean;
  /** containers are managed: Docker is expected */
  docker: boolean;
}

/** Debian package that brings each tool egressfw needs. */
export const PACKAGE_OF: Record<string, string> = { ipset: 'ipset', ufw: 'ufw', dockerd: 'docker.io', nft: 'nftables' };
const KERNEL_TOOLS = ['ipset', 'iptables-save', 'ip6tables-save', 'iptables-restore', 'ip6tables-restore'];

/** Read-only: what is in the kernel and the ufw files now. Without root it assumes nothing is installed. */
export async function observe(deps: ObserveDeps, want: Wanted): Promise<Observation> {
  const tools = [...KERNEL_TOOLS, ...(want.docker ? ['nft'] : []), ...(want.ufw ? ['ufw'] : []), ...(want.docker ? ['dockerd'] : [])];
  const present = await Promise.all(tools.map((t) => deps.onPath(t)));
  const missingTools = tools.filter((_, i) => !present[i]);
  if (!deps.isRoot || missingTools.some((t) => KERNEL_TOOLS.includes(t) || t === 'nft')) return { observed: nothingInstalled(), missingTools };

  const names = parseIpsetNames(await must(deps.exec, ['ipset', 'list', '-n']));
  const saves: Record<Family, string> = { 4: '', 6: '' };
  for (const f of FAMILIES) if (names.has(SET[f])) saves[f] = await must(deps.exec, ['ipset', 'save', SET[f]]);
  const [t4, t6] = await Promise.all(FAMILIES.map((f) => must(deps.exec, [SAVE[f], '-t', 'filter'])));
  const nft = (await deps.onPath('nft')) ? await readNft(deps.exec) : null;

  let ufw: Observed['ufw'] = null;
  if (want.ufw && !missingTools.includes('ufw')) {
    const [conf, defaults, b4, b6] = await Promise.all([
      deps.readText('/etc/ufw/ufw.conf'),
      deps.readText('/etc/default/ufw'),
      deps.readText(UFW_FILE[4]),
      deps.readText(UFW_FILE[6]),
    ]);
    if (conf !== null && defaults !== null && b4 !== null && b6 !== null) {
      ufw = { enabled: parseUfwEnabled(conf), outputPolicy: parseUfwDefaults(defaults), files: { 4: b4, 6: b6 } };
    }
  }
  return {
    firewalld: await findFirewalld(),
    observed: { readable: true, sets: setState(names, saves), tables: { 4: parseIptablesSave(t4!), 6: parseIptablesSave(t6!) }, nft, ufw },
    missingTools,
  };
}

/** egressfw's nft table, or null when it does not exist. */
export async function readNft(exec: Exec): Promise<NftObserved | null> {
  const argv = ['nft', '-j', 'list', 'table', NFT.family, NFT.table];
  const r = await exec(argv);
  if (r.exitCode !== 0) {
    if (/No such file or directory/.test(r.stderr)) return null;
    throw new CommandError(argv, r.exitCode, r.stderr);
  }
  return parseNftList(r.stdout);
}
