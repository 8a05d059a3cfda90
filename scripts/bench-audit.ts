// `npm run bench:audit` (root): what recording refused connections costs (issue 12), in throwaway network
// namespaces. Prints a table and writes docs/bench-audit.md.
//
//   tsx scripts/bench-audit.ts [--quick] [--blocks N] [--no-write]
//
// Run it through the machine's lab lock: flock /var/tmp/efw-labrun.lock npm run bench:audit
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { auditSection, renderAuditBench } from './bench/audit-recording.js';
import { progress, run } from './bench/util.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DOC = path.resolve(HERE, '..', 'docs', 'bench-audit.md');
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const blocks = args.includes('--blocks') ? Number(args[args.indexOf('--blocks') + 1]) : quick ? 2 : 15;
const write = !args.includes('--no-write') && !quick;

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark builds network namespaces: run it as root');
  for (const t of ['gcc', 'nft', 'ipset', 'iptables-restore', 'unshare', 'nsenter']) {
    if ((await run(['sh', '-c', `command -v ${t}`])).exitCode !== 0) throw new Error(`missing: ${t}: run \`bash scripts/install-deps.sh\` (nft: apt-get install nftables)`);
  }
  const t0 = Date.now();
  const load0 = os.loadavg();
  const result = await auditSection({ quick, blocks });
  const nft = (await run(['nft', '--version'])).stdout.trim();
  const body = renderAuditBench(result);
  const head = [
    '# Recording refused connections: cost',
    '',
    '<!-- Written by `npm run bench:audit` (scripts/bench-audit.ts); the next run replaces it. -->',
    '',
    `Run ${new Date().toISOString()} on ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), Linux ${os.release()}, ${nft}; load average ${load0.map((l) => l.toFixed(2)).join(' ')} at the start, ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} at the end; ${((Date.now() - t0) / 1000).toFixed(0)} s. Target: recording costs at most 3 % of new connections/s against the same rules without it.`,
    '',
  ].join('\n');
  process.stdout.write(`${head}\n${body}\n`);
  if (write) {
    fs.writeFileSync(DOC, `${head}\n${body}\n`);
    progress(`wrote ${path.relative(process.cwd(), DOC)}`);
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench-audit: ${e.stack ?? e.message}\n`);
  process.exitCode = 1;
});
