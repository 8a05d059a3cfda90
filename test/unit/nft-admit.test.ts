import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SYSTEM_PATH } from '../../src/system/exec.js';
import { admitLine, lineErrorOf, NftAdmitter, parseGateSet, reAddRefreshes, removeLine } from '../../src/system/nft-admit.js';

const e = (ip: string, port: number, timeoutSec: number, exists = false) => ({ family: (ip.includes(':') ? 6 : 4) as 4 | 6, ip, proto: 'tcp' as const, port, timeoutSec, ...(exists ? { exists } : {}) });

describe('gate kernel writer', () => {
  it('one transaction per line: elements once each (longest timeout), per family; delete + add only to refresh on old kernels', () => {
    const entries = [e('203.0.113.7', 443, 60), e('203.0.113.7', 443, 90), e('2001:db8::1', 443, 60), e('203.0.113.8', 80, 30, true)];
    expect(admitLine(entries, true)).toBe(
      'add element inet egressfw gate4 { 203.0.113.7 . tcp . 443 timeout 90s, 203.0.113.8 . tcp . 80 timeout 30s }; add element inet egressfw gate6 { 2001:db8::1 . tcp . 443 timeout 60s }',
    );
    expect(admitLine(entries, false)).toBe(
      'add element inet egressfw gate4 { 203.0.113.8 . tcp . 80 }; delete element inet egressfw gate4 { 203.0.113.8 . tcp . 80 }; ' +
        'add element inet egressfw gate4 { 203.0.113.7 . tcp . 443 timeout 90s, 203.0.113.8 . tcp . 80 timeout 30s }; add element inet egressfw gate6 { 2001:db8::1 . tcp . 443 timeout 60s }',
    );
  });

  it("reads a line's own error from what nft printed before the ack's", () => {
    const ack = 'Error: syntax error, unexpected number, expecting string\nack 7\n^^^\n';
    expect(lineErrorOf('^^^\nError: syntax error, unexpected number\n')).toBeNull();
    expect(lineErrorOf('Error: Could not process rule: No such file or directory\nadd element inet egressfw gate4 { 203.0.113.66 . tcp . 443 }\n^^^^\n' + ack.split('ack')[0])).toBe('Error: Could not process rule: No such file or directory');
    expect(lineErrorOf('^^^\nError: a\nx\nError: b\n')).toBe('Error: a');
    expect(lineErrorOf('xError: a\nError: b\n')).toBeNull(); // "Error:" only at the start of a line
  });

  it('re-adding refreshes timeouts from Linux 6.12', () => {
    expect(reAddRefreshes('6.1.0-28-amd64')).toBe(false);
    expect(reAddRefreshes('6.11.9')).toBe(false);
    expect(reAddRefreshes('6.12.1')).toBe(true);
    expect(reAddRefreshes('6.18.44-fc-v857')).toBe(true);
    expect(reAddRefreshes('7.0.0-30-generic')).toBe(true);
  });

  it('reads a gate set listing (nft -j) with the seconds left', () => {
    const json = JSON.stringify({ nftables: [{ metainfo: {} }, { set: { name: 'gate4', elem: [{ elem: { val: { concat: ['203.0.113.7', 'tcp', 443] }, timeout: 330, expires: 300 } }] } }] });
    expect(parseGateSet(json)).toEqual([{ ip: '203.0.113.7', proto: 'tcp', port: 443, expiresInSec: 300 }]);
  });

  it('speaks the ack protocol with nft -i: a line, then "ack N"; an error before the ack fails that line only; lines are pipelined', async () => {
    // a stand-in for `nft -i` that prints what nft prints on stderr: errors for lines naming set "nope", then the ack's syntax error
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'efw-nft-'));
    const fake = path.join(dir, 'nft');
    fs.writeFileSync(
      fake,
      `#!${process.execPath}
let buf = '';
process.stdin.on('data', (d) => {
  buf += d;
  let nl;
  while ((nl = buf.indexOf('\\n')) >= 0) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    require('fs').appendFileSync(${JSON.stringify(path.join(dir, 'lines'))}, line + '\\n');
    if (line.includes('203.0.113.66')) process.stderr.write('Error: No such file or directory\\n' + line + '\\n     ^^^^\\n');
    else if (line.startsWith('ack ')) setTimeout(() => process.stderr.write('Error: syntax error, unexpected number, expecting string\\n' + line + '\\n    ^^^\\n'), 5);
  }
});
`,
      { mode: 0o755 },
    );
    const w = new NftAdmitter({ toolDirs: [dir] });
    await w.admit([e('203.0.113.7', 443, 60)]);
    const three = await Promise.allSettled([w.admit([e('203.0.113.8', 443, 60)]), w.admit([e('203.0.113.9', 443, 60)]), w.admit([e('203.0.113.11', 443, 60)])]);
    expect(three.map((b) => b.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
    // a failing line rejects with nft's message; the next line works again (same nft process)
    const bad = w.admit([e('203.0.113.66', 443, 60)]);
    await new Promise((r) => setImmediate(r)); // next turn: its own line, written before the first is acknowledged
    const good = w.admit([e('203.0.113.10', 443, 60)]);
    await expect(bad).rejects.toThrow(/^Error: No such file or directory$/);
    await good;
    expect(w.stats).toMatchObject({ failures: 1, restarts: 0 });
    const lines = () => fs.readFileSync(path.join(dir, 'lines'), 'utf8').trim().split('\n');
    expect(lines()[0]).toBe('add element inet egressfw gate4 { 203.0.113.7 . tcp . 443 timeout 60s }');
    expect(lines()[1]).toBe('ack 1');
    // requests of one event-loop turn share a line
    expect(lines()).toContain('add element inet egressfw gate4 { 203.0.113.8 . tcp . 443 timeout 60s, 203.0.113.9 . tcp . 443 timeout 60s, 203.0.113.11 . tcp . 443 timeout 60s }');
    w.close();
    await expect(w.admit([e('203.0.113.7', 443, 60)])).rejects.toThrow(/closed/);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('runs nft from the fixed tool dirs with a clean environment: the caller\'s PATH and LD_PRELOAD are not used', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'efw-nft-env-'));
    const tools = path.join(dir, 'tools');
    const planted = path.join(dir, 'planted');
    fs.mkdirSync(tools);
    fs.mkdirSync(planted);
    // the stand-in records its environment, then acks every line; one file per process, written whole by a rename,
    // because the writer starts a spare nft ahead and close() may kill it mid-write
    const standIn = (mark: string) => `#!${process.execPath}
const fs = require('fs');
const file = ${JSON.stringify(dir + '/')} + ${JSON.stringify(mark)} + '.' + process.pid;
fs.writeFileSync(file + '.tmp', JSON.stringify(process.env));
fs.renameSync(file + '.tmp', file);
process.stdin.on('data', (d) => { for (const l of String(d).split('\\n')) if (l.startsWith('ack ')) process.stderr.write('Error: syntax error\\n' + l + '\\n'); });
`;
    fs.writeFileSync(path.join(tools, 'nft'), standIn('env-tools'), { mode: 0o755 });
    fs.writeFileSync(path.join(planted, 'nft'), standIn('env-planted'), { mode: 0o755 });
    const saved = { PATH: process.env.PATH, LD_PRELOAD: process.env.LD_PRELOAD };
    process.env.PATH = `${planted}:${saved.PATH}`;
    process.env.LD_PRELOAD = path.join(planted, 'evil.so');
    try {
      const w = new NftAdmitter({ toolDirs: [tools] });
      await w.admit([e('203.0.113.7', 443, 60)]);
      w.close();
    } finally {
      process.env.PATH = saved.PATH;
      if (saved.LD_PRELOAD === undefined) delete process.env.LD_PRELOAD;
      else process.env.LD_PRELOAD = saved.LD_PRELOAD;
    }
    const written = fs.readdirSync(dir);
    expect(written.filter((f) => f.startsWith('env-planted'))).toEqual([]);
    // the child that acked the line wrote its file before reading stdin
    const envFiles = written.filter((f) => /^env-tools\.\d+$/.test(f));
    expect(envFiles.length).toBeGreaterThanOrEqual(1);
    for (const f of envFiles) {
      const env = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as Record<string, string>;
      expect(env.LD_PRELOAD).toBeUndefined();
      expect(env.PATH).toBe(SYSTEM_PATH);
      expect(env.LC_ALL).toBe('C');
      // no history file: nft -i reads and writes $HOME/.nft.history (with no HOME at all: /.nft.history)
      expect(env.HOME).toBe('/dev/null');
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('hands over to a fresh nft after linesPerProcess lines, in order: the next child gets a line only once the last one\'s are acknowledged', async () => {
    // a stand-in that logs "<pid> <line>" and acks after a delay; with two lines per process, six lines take three processes
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'efw-nft-hand-'));
    const log = path.join(dir, 'lines');
    fs.writeFileSync(
      path.join(dir, 'nft'),
      `#!${process.execPath}
const fs = require('fs');
process.stdin.on('data', (d) => { for (const l of String(d).split('\\n')) { if (!l) continue; fs.appendFileSync(${JSON.stringify(log)}, process.pid + ' ' + l + '\\n'); if (l.startsWith('ack ')) setTimeout(() => process.stderr.write('Error: syntax error\\n' + l + '\\n'), 10); } });
process.stdin.on('end', () => { fs.appendFileSync(${JSON.stringify(log)}, process.pid + ' EOF\\n'); process.exit(0); });
`,
      { mode: 0o755 },
    );
    const w = new NftAdmitter({ toolDirs: [dir], linesPerProcess: 2 });
    const done: number[] = [];
    const jobs: Promise<void>[] = [];
    for (let i = 1; i <= 6; i++) {
      jobs.push(w.command(`add element inet egressfw policy4 { 172.18.0.${i} : jump pol-a }`).then(() => void done.push(i)));
      await new Promise((r) => setImmediate(r)); // each its own line
    }
    await Promise.all(jobs);
    expect(done).toEqual([1, 2, 3, 4, 5, 6]);
    // requests that came while a hand-over waited for the last acks shared a line
    expect(w.stats).toMatchObject({ failures: 0, restarts: 0 });
    expect(w.stats.handovers).toBeGreaterThanOrEqual(1);
    w.close();
    await new Promise((r) => setTimeout(r, 200));
    const rows = fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => l.split(' '));
    const adds = rows.filter((r) => r[1] === 'add');
    const elements = adds.flatMap((r) => r.join(' ').match(/172\.18\.0\.\d/g) ?? []);
    // the elements went in in the order asked; each process ran at most two lines, one after the other
    expect(elements).toEqual(['172.18.0.1', '172.18.0.2', '172.18.0.3', '172.18.0.4', '172.18.0.5', '172.18.0.6']);
    const pids = [...new Set(adds.map((r) => r[0]))];
    expect(pids.length).toBe(w.stats.handovers + 1);
    const order = adds.map((r) => pids.indexOf(r[0]!));
    expect(order).toEqual([...order].sort((x, y) => x - y));
    for (const pid of pids) expect(adds.filter((r) => r[0] === pid).length).toBeLessThanOrEqual(2);
    // every process it started is gone (the handed-over ones after their last ack, the rest at close)
    const alive = (pid: string | undefined) => {
      try {
        process.kill(Number(pid), 0);
        return true;
      } catch {
        return false;
      }
    };
    expect(pids.filter(alive)).toEqual([]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('nft not installed: the answers waiting for it fail with a message, nothing throws', async () => {
    const problems: string[] = [];
    const w = new NftAdmitter({ toolDirs: [os.tmpdir() + '/efw-no-such-dir'], onProblem: (p) => problems.push(p) });
    await expect(w.admit([e('203.0.113.7', 443, 60)])).rejects.toThrow(/nft: not installed/);
    expect(problems).toEqual([expect.stringMatching(/^cannot run nft: nft: not installed/)]);
    w.close();
  });
});

describe('removeLine (a reload takes elements out)', () => {
  it('per set, add then delete in one transaction: an element that timed out meanwhile is no error', () => {
    const e = (ip: string, port: number, set?: string) => ({ family: (ip.includes(':') ? 6 : 4) as 4 | 6, ip, proto: 'tcp' as const, port, timeoutSec: 0, ...(set ? { set } : {}) });
    expect(removeLine([e('203.0.113.7', 443), e('2001:db8::7', 443), e('203.0.113.7', 443), e('203.0.113.8', 80, 'pol-ci-gate4')])).toBe(
      'add element inet egressfw gate4 { 203.0.113.7 . tcp . 443 }; delete element inet egressfw gate4 { 203.0.113.7 . tcp . 443 }; ' +
        'add element inet egressfw gate6 { 2001:db8::7 . tcp . 443 }; delete element inet egressfw gate6 { 2001:db8::7 . tcp . 443 }; ' +
        'add element inet egressfw pol-ci-gate4 { 203.0.113.8 . tcp . 80 }; delete element inet egressfw pol-ci-gate4 { 203.0.113.8 . tcp . 80 }',
    );
    expect(removeLine([])).toBe('');
  });
});
