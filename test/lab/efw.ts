// Run the real, built egressfw CLI inside the lab's Docker host, and read its kernel state.
import fs from 'node:fs';
import path from 'node:path';
import type { ExecOpts, ExecResult, Lab } from './lab.js';

export const CLI = path.resolve('dist/cli.js');

/**
 * `egressfw ARGS` inside the lab host (its netns + private /etc/ufw, /run, ...).
 * `path` replaces PATH for egressfw only (not for the lab's own nsenter); egressfw
 * ignores it for the tools it runs (see withTools to break or hide one).
 */
export function efw(lab: Lab, args: string[], opts: ExecOpts & { path?: string } = {}): Promise<ExecResult> {
  const { path: p, ...rest } = opts;
  const argv = [process.execPath, CLI, ...args];
  return lab.host(p ? ['env', `PATH=${p}`, ...argv] : argv, { timeoutMs: 60_000, ...rest });
}

/** Write a config file into the lab dir and return its path. */
export function writeConfig(lab: Lab, name: string, yaml: string): string {
  const file = path.join(lab.dir, name);
  fs.writeFileSync(file, yaml);
  return file;
}

/** iptables-save, ip6tables-save and ipset save of the lab host, without counters, timestamps or set hash seeds. */
export async function kernelState(lab: Lab): Promise<string> {
  const parts = await Promise.all([
    lab.host(['iptables-save']),
    lab.host(['ip6tables-save']),
    lab.host(['ipset', 'save']),
    lab.host(['nft', '-j', 'list', 'table', 'inet', 'egressfw']),
  ]);
  return [...parts.slice(0, 3).map((p) => p.stdout), nftState(parts[3]!.stdout)]
    .join('\n')
    .split('\n')
    // the host's record sets' members come and go with traffic, like the nft records: not compared
    .filter((l) => !l.startsWith('#') && !/^add egressfw-refused-host-v[46] /.test(l))
    .map((l) => l.replace(/\[\d+:\d+\]/g, '[0:0]').replace(/ initval 0x[0-9a-f]+/, ''))
    .join('\n');
}

/**
 * egressfw's nft table, one line per object, without handles or the dynamic sets' members
 * (records and gate answers come and go with traffic; a rollback does not restore them).
 */
export function nftState(json: string): string {
  if (!json.trim()) return '# no nft table inet egressfw';
  const items = (JSON.parse(json).nftables as Record<string, Record<string, unknown>>[]).filter((i) => !i.metainfo);
  return items
    .map((i) => {
      const [kind, body] = Object.entries(i)[0]!;
      const { handle: _h, ...rest } = body;
      if (kind === 'set' && /^(refused|gate)/.test(String(rest.name))) delete rest.elem;
      if (kind === 'set' && Array.isArray(rest.elem)) rest.elem = (rest.elem as unknown[]).map((e) => JSON.stringify(e)).sort();
      if (kind === 'rule') delete rest.expr; // the comment names the rule and hashes its text
      return `nft ${kind} ${JSON.stringify(rest)}`;
    })
    .join('\n');
}

/** ipset save prints members in hash order: sort the add lines of each set for comparisons. */
export function canonical(state: string): string {
  const lines = state.split('\n');
  const adds = lines.filter((l) => l.startsWith('add ')).sort();
  return [...lines.filter((l) => !l.startsWith('add ')), ...adds].join('\n');
}

let toolLayers = 0;

/**
 * Run `fn` while the lab host sees `broken` tools (they print "injected failure" and exit 1)
 * and no `missing` tools. egressfw finds tools only in the system dirs (never through PATH),
 * so this overlays those dirs inside the lab host's private mount namespace: the machine and
 * its own /usr/sbin are untouched, and the overlay is gone when `fn` returns.
 */
export async function withTools<T>(lab: Lab, change: { broken?: string[]; missing?: string[]; once?: boolean }, fn: () => Promise<T>): Promise<T> {
  const layer = path.join(lab.dir, `tools-${++toolLayers}`);
  fs.mkdirSync(layer, { recursive: true });
  const tools = [...(change.broken ?? []), ...(change.missing ?? [])];
  for (const t of change.broken ?? []) {
    const fail = `echo "${t}: injected failure" >&2\nexit 1\n`;
    // once: only the first call fails (the step); later ones (its rollback) run the real binary,
    // found before the overlay hides it (multi-call binaries such as xtables-nft-multi go by argv[0]).
    const real = fs.realpathSync(['/usr/sbin', '/usr/bin'].map((d) => path.join(d, t)).find((f) => fs.existsSync(f))!);
    // Only egressfw's own call form (--noflush) fails: ufw runs the same tools with -n.
    const body = change.once
      ? `if [ -e ${layer}/${t}.failed ] || [ "$1" != "--noflush" ]; then exec -a ${t} ${real} "$@"; fi\ntouch ${layer}/${t}.failed\n${fail}`
      : fail;
    fs.writeFileSync(path.join(layer, t), `#!/bin/bash\n${body}`, { mode: 0o755 });
  }
  // an overlayfs whiteout (char device 0:0) hides the lower dir's file
  for (const t of change.missing ?? []) must(await lab.host(['mknod', path.join(layer, t), 'c', '0', '0']), `mknod ${t}`);
  // the real dirs that hold any of the tools (/sbin is a symlink to /usr/sbin on merged-/usr systems)
  const dirs = new Set<string>();
  for (const dir of ['/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    const real = fs.realpathSync(dir);
    if (tools.some((t) => fs.existsSync(path.join(real, t)))) dirs.add(real);
  }
  if (dirs.size === 0) throw new Error(`withTools: none of ${tools.join(', ')} is installed`);
  const mounted: string[] = [];
  try {
    for (const dir of dirs) {
      must(await lab.host(['mount', '-t', 'overlay', 'efw-tools', '-o', `lowerdir=${layer}:${dir}`, dir]), `overlay on ${dir}`);
      mounted.push(dir);
    }
    return await fn();
  } finally {
    for (const dir of mounted.reverse()) must(await lab.host(['umount', dir]), `umount ${dir}`);
  }
}

function must(r: ExecResult, what: string): void {
  if (r.exitCode !== 0) throw new Error(`withTools: ${what} failed: ${r.stderr}`);
}

/**
 * Rules sorted within each table: for comparisons across a dockerd restart,
 * after which Docker re-creates its own FORWARD rules in another order.
 */
export function orderInsensitive(state: string): string {
  return state
    .split(/^(?=\*)/m)
    .map((section) => section.split('\n').sort().join('\n'))
    .join('\n');
}

/** Poll `check` until it is true; returns the ms it took, or throws after `ms`. */
export async function within(ms: number, what: string, check: () => Promise<boolean>): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await check()) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`not within ${ms} ms: ${what}`);
}
