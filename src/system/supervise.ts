/**
 * Keeps one child process running (the DNS gate under `egressfw daemon`):
 * restarts it when it exits, quickly (fail closed: while it is down,
 * containers cannot resolve), backing off only while it keeps crashing.
 */
import type { ChildProcess } from 'node:child_process';
import { spawnTool } from './exec.js';
import readline from 'node:readline';

export interface SupervisorOptions {
  argv: string[];
  /** each stdout line of the child (the gate's query log lines go to the daemon's stdout) */
  onLine: (line: string) => void;
  /** started, exited, restarting */
  onEvent: (event: string, fields: Record<string, unknown>) => void;
  firstDelayMs?: number;
  maxDelayMs?: number;
}

export interface SupervisorState {
  running: boolean;
  pid: number | null;
  starts: number;
  lastExit: { at: string; code: number | null; signal: string | null } | null;
}

export class Supervisor {
  private child: ChildProcess | null = null;
  private stopped = true;
  private delay: number;
  private timer: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private taps: ((line: string) => void)[] = [];
  readonly state: SupervisorState = { running: false, pid: null, starts: 0, lastExit: null };

  constructor(private readonly o: SupervisorOptions) {
    this.delay = o.firstDelayMs ?? 200;
  }

  start(): void {
    this.stopped = false;
    if (!this.child) this.spawn();
  }

  /** Also hand each stdout line of the child to fn (the daemon's metrics count the gate's decisions). */
  tap(fn: (line: string) => void): void {
    this.taps.push(fn);
  }

  /** Signal the child (SIGHUP: reload). */
  signal(sig: NodeJS.Signals): void {
    this.child?.kill(sig);
  }

  /** Stop it and wait (SIGTERM, then SIGKILL after 3 s). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
  }

  /** Restart now (config change that needs new sockets). */
  async restart(): Promise<void> {
    await this.stop();
    this.delay = this.o.firstDelayMs ?? 200;
    this.start();
  }

  private spawn(): void {
    // the one door: a clean environment (the daemon's own LD_PRELOAD, NODE_OPTIONS stay out); DOCKER_HOST says where Docker is
    const c = spawnTool(this.o.argv, { stdio: ['ignore', 'pipe', 'inherit'], ...(process.env.DOCKER_HOST ? { env: { DOCKER_HOST: process.env.DOCKER_HOST } } : {}) });
    this.child = c;
    this.startedAt = Date.now();
    this.state.starts++;
    this.state.running = true;
    this.state.pid = c.pid ?? null;
    readline.createInterface({ input: c.stdout! }).on('line', (line) => {
      this.o.onLine(line);
      for (const t of this.taps) t(line);
    });
    c.on('error', (e) => this.o.onEvent('gate-error', { error: e.message }));
    c.on('exit', (code, signal) => {
      this.child = null;
      this.state.running = false;
      this.state.pid = null;
      this.state.lastExit = { at: new Date().toISOString(), code, signal };
      if (this.stopped) return;
      // A gate that ran a while gets the short delay again; a crash loop backs off.
      if (Date.now() - this.startedAt > 60_000) this.delay = this.o.firstDelayMs ?? 200;
      this.o.onEvent('gate-exited', { code, signal, restartInMs: this.delay });
      this.timer = setTimeout(() => {
        if (!this.stopped) this.spawn();
      }, this.delay);
      this.delay = Math.min(this.o.maxDelayMs ?? 5000, this.delay * 2);
    });
  }
}
