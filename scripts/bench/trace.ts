// Counting the processes a command spawns, from `strace -f -ttt -e trace=execve,clone,clone3,fork,vfork` output.
export const STRACE_ARGS = ['strace', '-f', '--seccomp-bpf', '-q', '-ttt', '-s', '200', '-e', 'trace=execve,clone,clone3,fork,vfork', '-e', 'signal=none'];

export interface Proc {
  pid: number;
  parent: number | undefined;
  argv: string[];
  start: number;
  end: number | undefined;
}

export interface Trace {
  /** the traced command itself (its first successful execve) */
  root: Proc | undefined;
  /** every other process that ran a program (successful execve), in order */
  procs: Proc[];
}

function parseArgv(text: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"(\.\.\.)?/g;
  for (const m of text.matchAll(re)) out.push(m[1]!.replace(/\\(.)/g, '$1'));
  return out;
}

export function parseStrace(text: string): Trace {
  const tgid = new Map<number, number>(); // thread id -> process id
  const parentOf = new Map<number, number>();
  const pendingFlags = new Map<number, string>();
  const pendingExec = new Map<number, { text: string; ts: number }>();
  const procs = new Map<number, Proc>();
  const order: Proc[] = [];
  const pidOf = (tid: number) => tgid.get(tid) ?? tid;
  for (const line of text.split('\n')) {
    const m = /^(\d+)\s+(\d+\.\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const tid = Number(m[1]);
    const ts = Number(m[2]);
    const rest = m[3]!;
    if (rest.startsWith('+++ exited') || rest.startsWith('+++ killed')) {
      const p = procs.get(tid);
      if (p) p.end = ts;
      continue;
    }
    const clone = /^(?:<\.\.\. )?(clone3?|fork|vfork)\b(.*)$/.exec(rest);
    if (clone) {
      const body = clone[2]!;
      const flags = (pendingFlags.get(tid) ?? '') + body;
      if (/<unfinished \.\.\.>\s*$/.test(body)) {
        pendingFlags.set(tid, flags);
        continue;
      }
      pendingFlags.delete(tid);
      const r = /=\s*(\d+)\s*$/.exec(body);
      if (!r) continue;
      const child = Number(r[1]);
      if (/CLONE_THREAD/.test(flags)) tgid.set(child, pidOf(tid));
      else parentOf.set(child, pidOf(tid));
      continue;
    }
    // With several processes running, strace splits a call: `execve(... <unfinished ...>` then `<... execve resumed>) = 0`.
    let call = rest;
    let at = ts;
    if (/^execve\(.*<unfinished \.\.\.>\s*$/.test(rest)) {
      pendingExec.set(tid, { text: rest.replace(/\s*<unfinished \.\.\.>\s*$/, ''), ts });
      continue;
    }
    const resumed = /^<\.\.\. execve resumed>(.*)$/.exec(rest);
    if (resumed) {
      const start = pendingExec.get(tid);
      pendingExec.delete(tid);
      if (!start) continue;
      call = start.text + resumed[1]!;
      at = start.ts;
    }
    const exec = /^execve\("((?:[^"\\]|\\.)*)", \[(.*)\](?:\.\.\.)?,.*\)\s*=\s*0\s*$/.exec(call);
    if (exec) {
      const pid = pidOf(tid);
      const p: Proc = { pid, parent: parentOf.get(pid), argv: [exec[1]!, ...parseArgv(exec[2]!).slice(1)], start: at, end: undefined };
      const prev = procs.get(pid);
      if (prev) {
        // a second execve in the same process (e.g. nsenter -> program): the program replaces it
        prev.argv = p.argv;
        continue;
      }
      procs.set(pid, p);
      order.push(p);
    }
  }
  // parents are known only once the clone returned, which strace may print after the child's execve
  for (const p of order) p.parent = parentOf.get(p.pid);
  const [root, ...rest] = order;
  return { root, procs: rest };
}

const base = (p: string) => p.split('/').pop() ?? p;

/** Does this invocation change kernel (or ufw) state? Reads: *-save, ipset list/save/test, iptables -S/-L/-V, ufw status. */
export function isWrite(argv: string[]): boolean {
  const tool = base(argv[0] ?? '');
  const args = argv.slice(1);
  if (tool.endsWith('-restore')) return true;
  if (tool.endsWith('-save')) return false;
  if (tool === 'ipset') return !!args[0] && !['list', 'save', 'test', '-v', 'version', '-n', '-L'].includes(args[0]);
  if (/^ip6?tables(-nft|-legacy)?$/.test(tool)) return args.some((a) => /^-([AIDFXNPRZE]|-append|-insert|-delete|-flush|-policy)$/.test(a));
  if (tool === 'ufw') return !['status', 'version', '--version', 'show'].includes(args.find((a) => !a.startsWith('-') || a === '--version') ?? '');
  return false;
}

export interface SpawnSummary {
  /** processes the traced program started itself */
  direct: number;
  /** all processes below it (incl. what ufw started) */
  total: number;
  /** direct spawns that change kernel/ufw state */
  writes: number;
  writeCmds: string[];
  /** seconds spent in direct children, by tool */
  byTool: Record<string, { n: number; ms: number }>;
}

export function summarize(t: Trace): SpawnSummary {
  const rootPid = t.root?.pid;
  const direct = t.procs.filter((p) => p.parent === rootPid);
  const writes = direct.filter((p) => isWrite(p.argv));
  const byTool: SpawnSummary['byTool'] = {};
  for (const p of direct) {
    const k = `${base(p.argv[0] ?? '?')}${p.argv[1] && !p.argv[1].startsWith('-') ? ` ${p.argv[1]}` : ''}`;
    const e = (byTool[k] ??= { n: 0, ms: 0 });
    e.n++;
    if (p.end !== undefined) e.ms += (p.end - p.start) * 1000;
  }
  return { direct: direct.length, total: t.procs.length, writes: writes.length, writeCmds: writes.map((p) => [base(p.argv[0] ?? ''), ...p.argv.slice(1)].join(' ')), byTool };
}
