// Records what observe() and the audit reader read from a real kernel after a real `egressfw sync`, as fixtures
// for test/unit/observe-recorded.test.ts (which replays them: the parsers are tested against real
// iptables-save, ip6tables-save, `ipset save` and `nft -j list` output, not only the fake kernel's).
// Two labs: iptables-nft (Debian 12's default, with Docker and the DNS gate's chains) and iptables-legacy (the
// lab's own /etc/alternatives switched inside its private /etc overlay; no Docker). Everything runs in the lab's
// namespaces. Needs root and `npm run build`; through the machine's lab lock:
//   flock /var/tmp/efw-labrun.lock npx tsx scripts/record-observe-fixtures.ts
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readKernelRecords } from '../src/system/audit-io.js';
import type { Exec } from '../src/system/exec.js';
import { observe } from '../src/system/observe.js';
import { efw, writeConfig } from '../test/lab/efw.js';
import { startLab, type Lab } from '../test/lab/lab.js';

const OUT = path.join(path.dirname(fileURLToPath(import.meta.url)), '../test/unit/fixtures/observe');
const LEGACY_TOOLS = ['iptables', 'iptables-save', 'iptables-restore', 'ip6tables', 'ip6tables-save', 'ip6tables-restore'];
const UFW_FILES = ['/etc/ufw/ufw.conf', '/etc/default/ufw', '/etc/ufw/before.rules', '/etc/ufw/before6.rules'];

export interface ObserveFixture {
  /** what recorded it, for people */
  recorded: { scenario: string; iptables: string; nft: string; ipset: string };
  config: string;
  /** state.json after the sync */
  state: string;
  exec: { argv: string[]; stdout: string; stderr: string; exitCode: number }[];
  files: Record<string, string | null>;
}

const must = async (lab: Lab, argv: string[]) => {
  const r = await lab.host(argv);
  if (r.exitCode !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

async function record(scenario: string, legacy: boolean): Promise<ObserveFixture> {
  const lab = await startLab({ docker: !legacy, ipv6: true });
  try {
    if (legacy) {
      // only the lab's /etc (an overlay in its private mount namespace) changes; the kernel has legacy xtables built in
      for (const t of LEGACY_TOOLS) await must(lab, ['ln', '-sfn', `/usr/sbin/${t.replace(/^(ip6?tables)/, '$1-legacy')}`, `/etc/alternatives/${t}`]);
    }
    await must(lab, ['ufw', '--force', 'enable']);
    const config = `allow:
  - domain: allowed.test
    ports: [80, 443]
  - domain: allowed2.test
  - cidr: 198.51.100.128/28
    ports: ["123/udp"]
dns:
  servers: [${lab.dnsServer}, "${lab.dnsServer6}"]
${legacy ? 'containers: {enabled: false}\n' : '  gate: {enabled: true}\n'}`;
    const file = writeConfig(lab, 'egressfw.yml', config);
    const stateDir = `${lab.dir}/state`;
    const sync = await efw(lab, ['sync', '--config', file, '--state-dir', stateDir]);
    if (sync.exitCode !== 0) throw new Error(`sync failed: ${sync.stderr}`);
    const calls: ObserveFixture['exec'] = [];
    const exec: Exec = async (argv) => {
      const r = await lab.host([...argv]);
      calls.push({ argv: [...argv], stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode });
      return r;
    };
    const files: ObserveFixture['files'] = {};
    const readText = async (f: string) => {
      const r = await lab.host(['cat', f]);
      files[f] = r.exitCode === 0 ? r.stdout : null;
      return files[f]!;
    };
    await observe({ exec, readText, onPath: async () => true, isRoot: true }, { ufw: true, docker: !legacy });
    await readKernelRecords(exec);
    for (const f of UFW_FILES) if (!(f in files)) await readText(f);
    const version = async (argv: string[]) => (await lab.host(argv)).stdout.split('\n')[0]!.trim();
    return {
      recorded: { scenario, iptables: await version(['iptables', '--version']), nft: await version(['nft', '--version']), ipset: await version(['ipset', '--version']) },
      config,
      state: fs.readFileSync(path.join(stateDir, 'state.json'), 'utf8'),
      exec: calls,
      files,
    };
  } finally {
    await lab.stop();
  }
}

fs.mkdirSync(OUT, { recursive: true });
for (const [name, legacy] of [['iptables-nft', false], ['iptables-legacy', true]] as const) {
  const fx = await record(name, legacy);
  if (legacy && !/legacy/.test(fx.recorded.iptables)) throw new Error(`the legacy lab still runs ${fx.recorded.iptables}`);
  fs.writeFileSync(path.join(OUT, `${name}.json`), `${JSON.stringify(fx, null, 1)}\n`);
  console.log(`${name}: ${fx.exec.length} commands, ${fx.recorded.iptables}`);
}
