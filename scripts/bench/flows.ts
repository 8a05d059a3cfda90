// What cutting the connections a sync refuses costs (issue 21 item 10): one `egressfw sync` that applies a
// change, with 10,000 tracked connections in conntrack (half of them to a refused address, which the sync
// cuts) beside the same sync with none, and the parts on their own (listing, judging, deleting).
// The real CLI (node dist/cli.js) inside the lab's Docker-host namespace; conntrack entries are made there
// with `conntrack -R` (the machine's own table is never touched).
import fs from 'node:fs';
import path from 'node:path';
import { startLab, type Lab } from '../../test/lab/lab.js';
import { conntrackDeleteBatch, parseConntrackSave, parseIpAddrJson, refusedFlows } from '../../src/plan/flows.js';
import { fmtMs, median, must, progress, run, table } from './util.js';

export interface FlowsOpts {
  /** tracked connections before the sync */
  flows: number;
  reps: number;
}

export interface FlowsResult {
  flows: number;
  refused: number;
  /** wall ms of a sync that applies a change: no tracked connections / `flows` of them */
  syncNone: number[];
  syncTracked: number[];
  /** connections each tracked sync said it cut */
  cut: number[];
  /** the parts, ms: `conntrack -L -o save` of `flows`, parse + judge in-process, `conntrack -R` deleting `refused` */
  list: number[];
  judge: number[];
  del: number[];
}

const ALLOWED = '203.0.113.10';
const REFUSED = '203.0.113.20';
const LOCAL = '198.51.100.2';

/** `conntrack -R` input creating n established TCP connections from the host, every other one to the refused address. */
function entries(n: number): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const dst = i % 2 ? REFUSED : ALLOWED;
    const sport = 10_000 + Math.floor(i / 2);
    lines.push(`-I -t 3600 -u SEEN_REPLY,ASSURED -s ${LOCAL} -d ${dst} -r ${dst} -q ${LOCAL} -p tcp --sport ${sport} --dport 443 --reply-port-src 443 --reply-port-dst ${sport} --state ESTABLISHED`);
  }
  return `${lines.join('\n')}\n`;
}

export async function flowsSection(cli: string, opts: FlowsOpts): Promise<FlowsResult> {
  let lab: Lab | undefined;
  try {
    lab = await startLab({ docker: false });
    progress(`lab ${lab.id} up (cutting refused connections)`);
    const host = (argv: string[], o: { input?: string; timeoutMs?: number } = {}) => run(lab!.hostArgv(argv), o);
    const hostMust = (argv: string[], o: { input?: string; timeoutMs?: number } = {}) => must(lab!.hostArgv(argv), o);
    await hostMust(['ufw', '--force', 'enable']);
    const batch = path.join(lab.dir, 'flows.conntrack');
    fs.writeFileSync(batch, entries(opts.flows));
    // Two configs a sync alternates between, so every sync applies a change (and so cuts).
    const config = (extra: string) => {
      const f = path.join(lab!.dir, `flows-${extra ? 'b' : 'a'}.yml`);
      fs.writeFileSync(f, `allow:\n  - cidr: ${ALLOWED}/32\n${extra}dns:\n  servers: [${lab!.dnsServer}]\ncontainers:\n  enabled: false\nipv6: false\n`);
      return f;
    };
    const configs = [config(''), config('  - cidr: 203.0.113.11/32\n')];
    const stateDir = path.join(lab.dir, 'flows-state');
    let turn = 0;
    const sync = async () => {
      const r = await host([process.execPath, cli, 'sync', '--json', '--config', configs[turn++ % 2]!, '--state-dir', stateDir], { timeoutMs: 120_000 });
      if (r.exitCode !== 0) throw new Error(`bench flows: sync exited ${r.exitCode}: ${r.stderr.slice(0, 2000)}`);
      const doc = JSON.parse(r.stdout) as { applied: string[]; flowsCut: { host: number } };
      if (!doc.applied.length) throw new Error('bench flows: the sync applied nothing (it must, to cut)');
      return { ms: r.ms, cut: doc.flowsCut.host };
    };
    await sync(); // egressfw installed; from here each sync changes only the allow sets
    const out: FlowsResult = { flows: opts.flows, refused: opts.flows / 2, syncNone: [], syncTracked: [], cut: [], list: [], judge: [], del: [] };
    const fill = async () => {
      await hostMust(['conntrack', '-F']);
      await hostMust(['conntrack', '-R', batch], { timeoutMs: 120_000 });
    };
    for (let i = 0; i < opts.reps; i++) {
      await hostMust(['conntrack', '-F']);
      out.syncNone.push((await sync()).ms);
      await fill();
      const s = await sync();
      out.syncTracked.push(s.ms);
      out.cut.push(s.cut);
      // the parts, on the same table
      await fill();
      const list = await hostMust(['conntrack', '-L', '-o', 'save'], { timeoutMs: 60_000 });
      out.list.push(list.ms);
      const addrs = await hostMust(['ip', '-j', '-d', 'addr', 'show']);
      const t0 = process.hrtime.bigint();
      const flows = parseConntrackSave(list.stdout).flows;
      const refused = refusedFlows({
        flows,
        ifaces: parseIpAddrJson(addrs.stdout),
        host: { dns: { 4: [{ host: lab.dnsServer, port: 53 }], 6: [] }, sets: { 4: [`${ALLOWED},tcp:443`], 6: [] }, otherAccepts: { 4: [], 6: [] } },
        containers: null,
      });
      const text = conntrackDeleteBatch(refused.host);
      out.judge.push(Number(process.hrtime.bigint() - t0) / 1e6);
      const del = path.join(lab.dir, 'flows-delete.conntrack');
      fs.writeFileSync(del, text);
      out.del.push((await hostMust(['conntrack', '-R', del], { timeoutMs: 60_000 })).ms);
      progress(`flows rep ${i + 1}/${opts.reps}: sync ${fmtMs(out.syncNone.at(-1)!)} with none, ${fmtMs(s.ms)} with ${opts.flows} (cut ${s.cut})`);
    }
    await hostMust(['conntrack', '-F']);
    return out;
  } finally {
    await lab?.stop();
  }
}

export function renderFlowsBench(r: FlowsResult): string {
  const m = (xs: number[]) => fmtMs(median(xs));
  return [
    `One \`egressfw sync\` that applies a change (host managed, ufw on), wall time including Node start-up, median of ${r.syncNone.length}; ` +
      `${r.flows.toLocaleString('en')} tracked TCP connections from the host, ${r.refused.toLocaleString('en')} of them to an address the sync refuses.`,
    '',
    table(
      ['', 'ms (median)', 'note'],
      [
        ['sync, no tracked connections', m(r.syncNone), 'lists an almost empty table'],
        [`sync, ${r.flows.toLocaleString('en')} tracked`, m(r.syncTracked), `cut ${[...new Set(r.cut)].join('/')} each time`],
        ['difference: the cut', fmtMs(median(r.syncTracked) - median(r.syncNone)), `${((median(r.syncTracked) / median(r.syncNone) - 1) * 100).toFixed(0)} % on top of the sync`],
        [`  conntrack -L -o save (${r.flows.toLocaleString('en')})`, m(r.list), 'one netlink dump'],
        ['  parse + judge (in-process)', m(r.judge), 'src/plan/flows.ts'],
        [`  conntrack -R deleting ${r.refused.toLocaleString('en')}`, m(r.del), 'one process, one batch'],
      ],
    ),
  ].join('\n');
}
