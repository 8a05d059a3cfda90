// The benchmark's own DNS server: dnsmasq with a generated hosts file, in the lab's "internet" namespace,
// on an address of its own (the lab's resolver stays as it is).
import fs from 'node:fs';
import path from 'node:path';
import type { Lab } from '../../test/lab/lab.js';
import { hostsFile, nameOf, recordsOf } from './allowlist.js';
import { killPid, must, run, sleep, spawnLogged, alive } from './util.js';

export const BENCH_DNS = '198.51.100.54';

export class BenchDns {
  private pid = 0;
  private ttl = 3600;
  private changed = new Set<number>();
  private readonly file: string;

  constructor(
    private readonly lab: Lab,
    private readonly total: number,
  ) {
    this.file = path.join(lab.dir, 'bench-hosts');
  }

  private inet(argv: string[]) {
    return ['nsenter', `--net=${this.lab.inetNetns}`, '--', ...argv];
  }

  async start(ttl = this.ttl): Promise<void> {
    this.ttl = ttl;
    if (!fs.existsSync(this.file)) {
      await must(this.inet(['ip', 'addr', 'add', `${BENCH_DNS}/32`, 'dev', 'lo']));
      this.write();
    }
    const child = spawnLogged(this.inet([
      'dnsmasq', '--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--pid-file=',
      `--addn-hosts=${this.file}`, `--local-ttl=${ttl}`, '--neg-ttl=60', '--local=/test/',
      '--bind-interfaces', `--listen-address=${BENCH_DNS}`, '--user=root', '--group=root',
      `--log-facility=${path.join(this.lab.dir, 'bench-dnsmasq.log')}`,
    ]), path.join(this.lab.dir, 'bench-dnsmasq.out'));
    this.pid = child.pid!;
    await this.expect(0);
  }

  async stop(): Promise<void> {
    await killPid(this.pid);
    this.pid = 0;
  }

  async restart(ttl: number): Promise<void> {
    await this.stop();
    await this.start(ttl);
  }

  private write(): void {
    fs.writeFileSync(`${this.file}.tmp`, hostsFile(this.total, this.changed));
    fs.renameSync(`${this.file}.tmp`, this.file);
  }

  /** Serve version 1 answers for the `changed` names (version 0 for the rest); returns once dnsmasq answers so. */
  async set(changed: Set<number>, probe?: number): Promise<void> {
    const before = this.changed;
    this.changed = new Set(changed);
    this.write();
    process.kill(this.pid, 'SIGHUP'); // re-reads the hosts file
    const check = probe ?? [...changed, ...before][0];
    if (check !== undefined) await this.expect(check);
  }

  /** Wait until the server answers name i with what it should (AAAA differs between versions). */
  private async expect(i: number): Promise<void> {
    const want = recordsOf(i, this.changed.has(i) ? 1 : 0).AAAA[0]!;
    for (let k = 0; k < 200; k++) {
      const r = await run(this.inet(['busybox', 'nslookup', '-type=aaaa', nameOf(i), BENCH_DNS]), { timeoutMs: 3000 });
      if (r.stdout.includes(want)) return;
      if (this.pid && !alive(this.pid)) throw new Error(`bench dnsmasq died: ${fs.readFileSync(path.join(this.lab.dir, 'bench-dnsmasq.out'), 'utf8')}`);
      await sleep(50);
    }
    throw new Error(`bench dnsmasq does not answer ${nameOf(i)} with ${want}`);
  }
}
