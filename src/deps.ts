/**
 * The real dependencies each command gets: processes, files, clock, DNS.
 * src/cli.ts imports this module only once a command runs, so that
 * `--version` and `--help` do not load them (start-up is part of every cron run).
 */
import { access, readdir, realpath } from 'node:fs/promises';
import path from 'node:path';
import type { InstallDeps } from './commands/install.js';
import type { ProxyDeps } from './commands/proxy.js';
import type { ExportDeps } from './commands/export.js';
import { query } from './system/dns-client.js';
import { inspectDocker, runningContainers } from './system/docker-view.js';
import { dockerClient } from './system/docker.js';
import { realExec, onPath } from './system/exec.js';
import { backupOnce, confinedFiles, firstLine, readText, removeFile, writeFileAtomic } from './system/files.js';
import { removeStateFiles, setAsideDamaged } from './system/state.js';
import { composeConfig } from './system/compose.js';
import { networkInterfaces, release } from 'node:os';
import type { GateDeps } from './commands/gate.js';
import type { DaemonMetricsDeps } from './commands/daemon.js';
import { VERSION } from './defaults.js';
import { probeGate } from './gate/probe.js';
import { formatLog, PRIORITY } from './schedule/daemon.js';
import { readGateLogs } from './system/gate-log.js';
import { Supervisor } from './system/supervise.js';
import { acquireLock } from './system/lock.js';
import { printText } from './text.js';
import { observe, type Wanted } from './system/observe.js';

const isRoot = process.getuid?.() === 0;
// Every command prints through these two: nothing a terminal acts on gets through, whatever a message quotes.
const out = (t: string) => process.stdout.write(printText(t));
const warn = (t: string) => process.stderr.write(`${printText(t)}\n`);

export function planDeps() {
  return {
    query,
    readText,
    observe: (want: Wanted) => observe({ exec: realExec, readText, onPath, isRoot }, want),
    inspectDocker: () => inspectDocker(),
    // running containers, for the policy map (asked only when policies are in use)
    inventory: () => runningContainers(),
    now: () => Math.floor(Date.now() / 1000),
    isRoot,
    out,
    warn,
  };
}

export function syncDeps() {
  return { ...planDeps(), exec: realExec, writeFileAtomic, backupOnce, onPath, acquireLock: () => acquireLock(), setAside: setAsideDamaged };
}

/** `report`, `suggest` and the daemon's collections of refused-connection records. */
export function auditDeps() {
  return {
    exec: realExec,
    readText,
    writeFileAtomic,
    listContainers: () => dockerClient().containers({ all: true }),
    acquireLock: (file: string) => acquireLock(file),
    now: () => Math.floor(Date.now() / 1000),
    isRoot,
    out,
  };
}

export function uninstallDeps() {
  return { ...syncDeps(), removeStateFiles, removeFile };
}

/**
 * `self` is the file this CLI runs from, `started` the path it was started as (process.argv[1]:
 * /usr/bin/egressfw, a symlink to the .deb's bundle, stays that). A file that starts itself
 * (#!/usr/bin/node, as the .deb's does) goes into cron and unit files alone, so they keep working
 * with the distribution's node; anything else (dist/cli.js, the npm bundle's #!/usr/bin/env node)
 * runs with the node that runs us now.
 */
export async function installDeps(self: string, started?: string): Promise<InstallDeps> {
  const cli = started && (await realpath(started).catch(() => '')) === self ? started : self;
  const head = await firstLine(cli);
  const selfStarting = head !== null && /^#!\/\S+$/.test(head) && !head.startsWith('#!/usr/bin/env');
  return {
    exec: realExec,
    readText,
    writeFileAtomic,
    isRoot,
    systemdRunning: () => access('/run/systemd/system').then(() => true, () => false),
    ...(selfStarting ? {} : { node: process.execPath }),
    cli,
    out,
    removeFile,
  };
}

/** Every read, write and delete under --out goes through the real --out, never a symlink below it. */
export function proxyDeps(out_: string): ProxyDeps {
  return {
    ...confinedFiles(path.resolve(process.cwd(), out_)),
    composeConfig: composeConfig(realExec),
    cwd: process.cwd(),
    out,
    warn,
  };
}

/** export: like proxy, every write goes through the real --out ("-": stdout, nothing written). */
export function exportDeps(out_: string): ExportDeps {
  const files = confinedFiles(path.resolve(process.cwd(), out_ === '-' ? '.' : out_));
  return {
    writeText: files.writeText,
    readText: files.readText,
    removeFile: files.removeFile,
    // the names in --out itself (the user chose it; reads and removals still go through `files`)
    listDir: (dir: string) => readdir(dir).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? [] : Promise.reject(e))),
    cwd: process.cwd(),
    out,
    warn,
  };
}

/** status: the plan deps plus how to look at the DNS gate. */
export function statusDeps() {
  return {
    ...planDeps(),
    gate: {
      readText,
      probe: (port: number) => probeGate(port),
      dockerVersion: () => dockerClient().engine().then((e) => e.version, () => null),
      readLogs: (dir: string) => readGateLogs(dir),
      nowMs: Date.now,
    },
  };
}

/** The daemon runs the gate as a supervised child: this CLI again, `gate`, with the gate's node flags. */
export async function gateSupervisor(o: { config: string; stateDir: string; json: boolean; journal?: boolean }, self: string) {
  // The gate's modules load only where they run (the daemon, the gate): not on every sync.
  const [{ GATE_NODE_FLAGS }, { isQueryLineText }] = await Promise.all([import('./commands/gate.js'), import('./gate/log.js')]);
  const log = (event: string, fields: Record<string, unknown>) => out(`${formatLog(o.json, new Date(), event, fields, o.journal)}\n`);
  const supervisor = new Supervisor({
    argv: [process.execPath, ...GATE_NODE_FLAGS, self, 'gate', '--config', path.resolve(o.config), '--state-dir', path.resolve(o.stateDir)],
    // The journal gets the gate's line a minute and anything else it prints, never its query lines (they
    // are in gate.log; metrics count them through a tap): a container flooding queries would flood the
    // journal, and journald's rate limit would then drop the daemon's own warnings with them.
    onLine: (line) => {
      if (!isQueryLineText(line)) out(o.journal ? `<${PRIORITY.info}>${line}\n` : `${line}\n`);
    },
    onEvent: log,
  });
  // the daemon's refresh waits for the gate to answer (its lookups are redirected to it)
  return Object.assign(supervisor, { probe: (port: number) => probeGate(port).then((r) => r.ok) });
}

/** The daemon follows Docker's events for the policy map (src/schedule/policy-follow.ts). */
export async function followSystem() {
  const [{ NftAdmitter }, { watchDockerEvents }, { inventoryOf }] = await Promise.all([import('./system/nft-admit.js'), import('./system/docker-events.js'), import('./plan/policies.js')]);
  const client = dockerClient({ timeoutMs: 5000 });
  return {
    watch: (h: Parameters<typeof watchDockerEvents>[1]) => watchDockerEvents(client.socket, h),
    inspect: async (id: string) => {
      const c = await client.container(id);
      return c && c.state === 'running' ? inventoryOf([c])[0]! : null;
    },
    list: async (ids: string[]) => inventoryOf(await client.running(ids)),
    writer: () => new NftAdmitter({ onProblem: (w) => warn(`daemon: policy map writer: ${w}`) }),
  };
}

/** The daemon's metrics outputs (loaded only when metrics are configured... and cheap when not). */
export async function metricsDeps(): Promise<DaemonMetricsDeps> {
  const [{ serveMetrics }, { readKernelRecords }] = await Promise.all([import('./system/metrics-out.js'), import('./system/audit-io.js')]);
  return {
    build: { version: VERSION, nodejs: process.versions.node },
    readRecords: () => readKernelRecords(realExec, { modes: false }),
    serve: serveMetrics,
    writeFileAtomic: (file, text) => writeFileAtomic(file, text, 0o644),
  };
}

export async function gateDeps(): Promise<GateDeps> {
  const { NftAdmitter, readGateSets, reAddRefreshes } = await import('./system/nft-admit.js');
  const { UpstreamPool } = await import('./system/upstream-pool.js');
  return {
    query,
    upstreamPool: () => UpstreamPool.open({ warn: (w) => warn(`gate: ${w}`) }),
    readText,
    writeFileAtomic,
    admitter: () => new NftAdmitter({ reAdd: reAddRefreshes(release()), onProblem: (w) => warn(`gate: kernel writer: ${w}`) }),
    cutFlows: async (config, closed) => {
      const [{ readNft }, { cutRefusedFlows }, { kernelContainerRules, toElements }] = await Promise.all([import('./system/observe.js'), import('./system/flows.js'), import('./plan/flows.js')]);
      const containers = kernelContainerRules(config, await readNft(realExec));
      return cutRefusedFlows(realExec, { host: null, containers }, toElements(closed));
    },
    ...(reAddRefreshes(release()) ? {} : { presentElements: () => readGateSets(realExec) }),
    containers: () => dockerClient().containers(),
    sources: {
      readMaps: async () => {
        const { MAP_LIST_ARGV } = await import('./gate/sources.js');
        // '' for a map that is not there (policies not in use, or the table being re-created)
        return Promise.all(([4, 6] as const).map(async (f) => {
          const r = await realExec(MAP_LIST_ARGV(f));
          return r.exitCode === 0 ? r.stdout : '';
        }));
      },
      localAddresses: () => Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address.split('%')[0]!)),
    },
    isRoot,
    out,
    warn,
  };
}
