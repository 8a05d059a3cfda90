// Run the real, built egressfw CLI inside the lab's Docker host, and read its kernel state.
import fs from 'node:fs';
import path from 'node:path';
import type { ExecOpts, ExecResult, Lab } from './lab.js';

export const CLI = path.resolve('dist/cli.js');

/**
 * `egressfw ARGS` inside the lab host (its netns + private /etc/ufw, /run, ...).
 * `path` replaces PATH for egressfw only (not for the lab's own nsenter).
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
    .filter((l) => !l.startsWith('#'))
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

/** A directory with a fake `tool` that always fails, to put first on PATH (failure injection). */
export function brokenTool(lab: Lab, tool: string, opts: { once?: boolean } = {}): string {
  const dir = path.join(lab.dir, `broken-${tool}`);
  fs.mkdirSync(dir, { recursive: true });
  const fail = `echo "${tool}: injected failure" >&2\nexit 1\n`;
  // once: only the first call fails (the step); later calls (its rollback) run the real tool.
  const body = opts.once ? `if [ -e ${dir}/failed ]; then exec /usr/sbin/${tool} "$@"; fi\ntouch ${dir}/failed\n${fail}` : fail;
  fs.writeFileSync(path.join(dir, tool), `#!/bin/sh\n${body}`, { mode: 0o755 });
  return dir;
}

/** A PATH directory with symlinks to the given tools only (to make another tool "missing"). */
export function onlyTools(lab: Lab, tools: string[]): string {
  const dir = path.join(lab.dir, `only-${tools.length}-${Date.now()}`);
  fs.mkdirSync(dir, { recursive: true });
  for (const t of tools) {
    const real = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].map((d) => path.join(d, t)).find((p) => fs.existsSync(p));
    if (real) fs.symlinkSync(real, path.join(dir, t));
  }
  return dir;
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
