/**
 * Record real Docker Engine API answers from a lab dockerd, as golden inputs for
 * test/unit/docker.test.ts. Run as root through the lab lock, once per version:
 *   EFW_DOCKER=28.5 flock /var/tmp/efw-labrun.lock npx tsx scripts/capture-docker-api.ts
 * Writes test/unit/fixtures/docker/api-<EFW_DOCKER>.json: { "GET <path>": body, ... }.
 * Machine-specific fields of /info (host name, ids, clocks, sizes) are replaced by fixed values.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startLab } from '../test/lab/lab.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function get(socket: string, p: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath: socket, path: p, headers: { Host: 'docker' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString()) }));
    });
    req.on('error', reject);
  });
}

const SCRUB_INFO: Record<string, unknown> = {
  ID: 'scrubbed-id', Name: 'lab-host', SystemTime: '2025-01-01T00:00:00Z', MemTotal: 4_000_000_000, NCPU: 2,
  KernelVersion: '6.x', OperatingSystem: 'Debian GNU/Linux 12 (bookworm)', DockerRootDir: '/var/lib/docker',
};

async function main() {
  const lab = await startLab();
  try {
    const must = async (args: string[]) => {
      const r = await lab.docker(args);
      if (r.exitCode !== 0) throw new Error(`docker ${args.join(' ')}: ${r.stderr}`);
      return r.stdout.trim();
    };
    await must(['network', 'create', '--ipv6', '--subnet', '2001:db8:1:1::/64', 'usernet']);
    await must(['network', 'create', '--internal', 'internalnet']);
    await must(['network', 'create', '-o', 'com.docker.network.bridge.name=efwbr0', 'namedbr']);
    await must(['network', 'create', '-d', 'macvlan', '--subnet', '203.0.113.192/27', '-o', 'parent=eth0', 'macnet']);
    await lab.runContainer({ name: 'onbridge', args: ['--label', 'com.example.role=web'] });
    await lab.runContainer({ name: 'onuser', network: 'usernet' });
    await must(['network', 'connect', 'internalnet', 'onuser']);
    await lab.runContainer({ name: 'onmac', network: 'macnet' });
    await lab.runContainer({ name: 'onnamed', network: 'namedbr' });
    await lab.runContainer({ name: 'hostnet', network: 'host' });
    await lab.runContainer({ name: 'nonet', network: 'none' });
    await lab.runContainer({ name: 'shared', args: ['--network', 'container:onbridge'] });
    await must(['create', '--name', 'stopped', '--network', 'usernet', 'busybox:latest', 'true']);

    // dockerd's socket lives in the lab's private /run: reach it through the holder's root
    const socket = `/proc/${lab.hostNetns.split('/')[2]}/root/run/docker.sock`;
    const out: Record<string, unknown> = {};
    const record = async (p: string) => {
      const r = await get(socket, p);
      if (r.status !== 200) throw new Error(`GET ${p}: ${r.status} ${JSON.stringify(r.body)}`);
      out[`GET ${p}`] = r.body;
      return r.body;
    };
    await record('/version');
    const info = (await record('/info')) as Record<string, unknown>;
    for (const [k, v] of Object.entries(SCRUB_INFO)) if (k in info) info[k] = v;
    const nets = (await record('/networks')) as { Id: string }[];
    for (const n of nets) await record(`/networks/${n.Id}?verbose=false`);
    await record('/networks/bridge');
    await record('/containers/json');
    await record('/containers/json?all=true');
    const version = process.env.EFW_DOCKER ?? '20.10';
    const file = path.join(ROOT, 'test/unit/fixtures/docker', `api-${version}.json`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify(out, null, 1) + '\n');
    console.log(`wrote ${file} (${Object.keys(out).length} answers)`);
  } finally {
    await lab.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
