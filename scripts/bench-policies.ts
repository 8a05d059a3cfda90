// `npm run bench:policies` (root): what per-workload policies cost (issue 18), in throwaway network namespaces
// and a lab dockerd. Prints the figures side by side and writes docs/bench-policies.md.
//
//   tsx scripts/bench-policies.ts [--quick] [--no-write] [--parts packet,window,rss] [--cli PATH/cli.js]
//   (--parts or --cli: printed only, docs/bench-policies.md is left as it is)
//
// Run it through the machine's lab lock: flock /var/tmp/efw-labrun.lock npm run bench:policies
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { policiesSection, renderPoliciesBench, renderPoliciesTargets, type PoliciesPart } from './bench/policies.js';
import { progress, run } from './bench/util.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const DOC = path.join(ROOT, 'docs', 'bench-policies.md');
const SUMMARY = path.join(ROOT, 'docs', 'benchmarks.md');
const BEGIN = '<!-- policies: written by `npm run bench:policies` from the run in bench-policies.md -->';
const END = '<!-- /policies -->';
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const flag = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const parts = flag('--parts')?.split(',') as PoliciesPart[] | undefined;
const cliFlag = flag('--cli');
const write = !args.includes('--no-write') && !quick && !parts && !cliFlag;

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark builds network namespaces: run it as root');
  const cli = cliFlag ? path.resolve(cliFlag) : path.join(ROOT, 'dist', 'cli.js');
  if (!fs.existsSync(cli)) throw new Error(`${cli} is missing: \`npm run build\` first`);
  const t0 = Date.now();
  const load0 = os.loadavg();
  const result = await policiesSection({ quick, cli, ...(parts ? { parts } : {}) });
  const nft = (await run(['nft', '--version'])).stdout.trim();
  const stamp = new Date().toISOString();
  const head = [
    '# Per-workload policies: cost',
    '',
    '<!-- Written by `npm run bench:policies` (scripts/bench-policies.ts); the next run replaces it. -->',
    '',
    `Run ${stamp}${cliFlag ? ` of ${cli}` : ''} on ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), Linux ${os.release()}, ${nft}; load average ${load0.map((l) => l.toFixed(2)).join(' ')} at the start, ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} at the end; ${((Date.now() - t0) / 1000).toFixed(0)} s. Figures from one run, side by side.`,
    '',
  ].join('\n');
  const text = `${head}\n## Targets\n\n${renderPoliciesTargets(result)}\n\n${renderPoliciesBench(result)}\n`;
  process.stdout.write(text);
  if (write) {
    fs.writeFileSync(DOC, text);
    progress(`wrote ${path.relative(process.cwd(), DOC)}`);
    // the targets beside the others in docs/benchmarks.md, from this same run (replaced between the markers)
    const section = `${BEGIN}\n## Per-workload policies (issue 18)\n\nFrom the run of ${stamp} ([bench-policies.md](bench-policies.md): method, every figure, the spread).\n\n${renderPoliciesTargets(result)}\n${END}`;
    const old = fs.readFileSync(SUMMARY, 'utf8');
    const a = old.indexOf(BEGIN);
    const b = old.indexOf(END);
    fs.writeFileSync(SUMMARY, a >= 0 && b > a ? `${old.slice(0, a)}${section}${old.slice(b + END.length)}` : `${old.trimEnd()}\n\n${section}\n`);
    progress(`wrote the policies section of ${path.relative(process.cwd(), SUMMARY)}`);
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench-policies: ${e.stack ?? e.message}\n`);
  process.exitCode = 1;
});
