// Section 4: start-up, and a one-shot refresh of 1,000 names with no change (what every cron run pays), for the
// single-file build (dist/pkg/egressfw.mjs, what the .deb and the npm package install) side by side with the
// unbundled CLI (dist/cli.js), and with the CLI as it was before commands were loaded lazily.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Lab } from '../../test/lab/lab.js';
import { debianNode18Argv, debianNode18Root, npmNode22 } from '../../test/support/node-runtimes.js';
import { configYaml } from './allowlist.js';
import { BENCH_DNS } from './dns.js';
import { parseStrace, STRACE_ARGS } from './trace.js';
import { median, must, progress, run } from './util.js';

export interface Timed {
  label: string;
  ms: number[];
}

export interface StartupResult {
  n: number;
  /** `--version` on this machine's node, no namespaces: node -e 0, before (every module loaded up front), dist/cli.js, bundle */
  version: Timed[];
  /** the bundle's `--version` on each Node, with that Node's own floor (`-e 0`) */
  byNode: { name: string; version: string; floorMs: number[]; bundleMs: number[] }[];
  /** one-shot refreshes (no DNS change) and offline syncs in the lab host, interleaved */
  refresh: Timed[];
  /** the kernel reads a refresh makes (from a traced run), each timed on its own in the lab host */
  reads: { cmd: string; ms: number[] }[];
  nsenterMs: number;
}

export interface StartupOpts {
  n: number;
  reps: number;
}

/** Interleave: one run of each, `reps` rounds, so load changes hit every variant alike. */
async function rounds(reps: number, variants: { label: string; argv: string[]; timeoutMs?: number }[], runIt: (argv: string[], t?: number) => Promise<{ ms: number }>): Promise<Timed[]> {
  const out = variants.map((v) => ({ label: v.label, ms: [] as number[] }));
  for (let r = 0; r < reps; r++) for (const [i, v] of variants.entries()) out[i]!.ms.push((await runIt(v.argv, v.timeoutMs)).ms);
  return out;
}

export async function startupSection(lab: Lab, root: string, opts: StartupOpts): Promise<StartupResult> {
  const cli = path.join(root, 'dist', 'cli.js');
  const bundle = path.join(root, 'dist', 'pkg', 'egressfw.mjs');
  if (!fs.existsSync(bundle)) throw new Error(`${bundle} is missing: \`npm run package\` first (npm run bench does it)`);
  const node = process.execPath;
  // "Before": dist/cli.js with every command and its dependencies loaded up front, as cli.ts did before it imported
  // them lazily (--import preloads the same modules the old static imports loaded).
  const eager = ['plan', 'sync', 'daemon', 'install', 'status', 'uninstall', 'proxy'].map((c) => path.join(root, 'dist', 'commands', `${c}.js`));
  const before = [node, ...[...eager, path.join(root, 'dist', 'deps.js')].flatMap((f) => ['--import', pathToFileURL(f).href]), cli];
  const direct = (argv: string[]) => must(argv, { timeoutMs: 60_000 });

  // ---- 1. --version, no namespaces (it reads and writes nothing)
  for (let i = 0; i < 3; i++) for (const a of [[node, '-e', '0'], [...before, '--version'], [node, cli, '--version'], [node, bundle, '--version']]) await direct(a); // warm the page cache
  const version = await rounds(opts.reps * 3, [
    { label: '`node -e 0` (Node alone)', argv: [node, '-e', '0'] },
    { label: '`node dist/cli.js --version`, every command loaded up front (before this change)', argv: [...before, '--version'] },
    { label: '`node dist/cli.js --version` (commands loaded when they run)', argv: [node, cli, '--version'] },
    { label: '`node dist/pkg/egressfw.mjs --version` (the single-file build)', argv: [node, bundle, '--version'] },
  ], (a) => direct(a));
  progress(`startup: --version ${version.map((v) => `${Math.round(median(v.ms))} ms`).join(' / ')}`);

  const [root18, node22] = await Promise.all([debianNode18Root(), npmNode22()]);
  const nodes = [
    { name: "Debian 12's node 18 (what the .deb runs on)", argv: debianNode18Argv(root18) },
    { name: 'this machine\'s node', argv: [node] },
    { name: 'node 22 (npm)', argv: [node22] },
  ];
  const byNode: StartupResult['byNode'] = [];
  for (const nd of nodes) {
    const v = (await direct([...nd.argv, '-p', 'process.version'])).stdout.trim();
    const [floor, b] = await rounds(opts.reps * 2, [{ label: 'floor', argv: [...nd.argv, '-e', '0'] }, { label: 'bundle', argv: [...nd.argv, bundle, '--version'] }], (a) => direct(a));
    byNode.push({ name: nd.name, version: v, floorMs: floor!.ms, bundleMs: b!.ms });
  }
  progress(`startup: bundle --version by Node ${byNode.map((b) => `${b.version} ${Math.round(median(b.bundleMs))} ms`).join(', ')}`);

  // ---- 2. one-shot refresh of n names with no change, in the lab host (state settled by a first sync)
  const config = path.join(lab.dir, `startup-${opts.n}.yml`);
  fs.writeFileSync(config, configYaml(opts.n, { dnsServer: BENCH_DNS }));
  const stateDir = path.join(lab.dir, 'startup-state');
  const sync = (pre: string[], ...extra: string[]) => [...pre, 'sync', '--quiet', '--config', config, '--state-dir', stateDir, ...extra];
  const host = (argv: string[], t = 120_000) => must(lab.hostArgv(argv), { timeoutMs: t });
  await host(sync([node, bundle]));
  await host(sync([node, bundle])); // warm-up
  const nsenter: number[] = [];
  for (let i = 0; i < 5; i++) nsenter.push((await host(['true'])).ms);
  const refresh = await rounds(opts.reps, [
    { label: 'refresh: `node dist/cli.js sync`', argv: sync([node, cli]) },
    { label: 'refresh: bundle, this machine\'s node', argv: sync([node, bundle]) },
    { label: "refresh: bundle, Debian 12's node 18", argv: sync([...debianNode18Argv(root18), bundle]) },
    { label: 'no DNS: bundle `sync --offline`', argv: sync([node, bundle], '--offline') },
    { label: 'start-up only: bundle `--version`', argv: [node, bundle, '--version'] },
  ], (a) => host(a));
  progress(`startup: refresh of ${opts.n} names ${refresh.map((v) => `${Math.round(median(v.ms))} ms`).join(' / ')}`);

  // ---- 3. what the refresh reads from the kernel: its spawns (strace), each timed on its own
  const out = path.join(lab.dir, 'startup-strace.txt');
  await host([...STRACE_ARGS, '-o', out, ...sync([node, bundle])], 180_000);
  const t = parseStrace(fs.readFileSync(out, 'utf8'));
  fs.rmSync(out, { force: true });
  const direct1 = t.procs.filter((p) => p.parent === t.root?.pid);
  const reads: StartupResult['reads'] = [];
  for (const p of direct1) {
    const ms: number[] = [];
    for (let i = 0; i < opts.reps; i++) ms.push((await run(lab.hostArgv(p.argv), { timeoutMs: 60_000 })).ms);
    reads.push({ cmd: [path.basename(p.argv[0]!), ...p.argv.slice(1)].join(' '), ms });
  }
  progress(`startup: ${reads.length} kernel reads, ${Math.round(reads.reduce((s, r) => s + median(r.ms), 0))} ms on their own`);
  return { n: opts.n, version, byNode, refresh, reads, nsenterMs: median(nsenter) };
}
