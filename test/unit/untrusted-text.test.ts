/**
 * Issue 21 items 1 and 2: text from the network (a container's DNS query names, Docker's labels)
 * never becomes config, never forges an output line, never reaches a terminal as an escape sequence.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { applyCollection, type ContainerInfo } from '../../src/audit/collect.js';
import { emptyHistory } from '../../src/audit/history.js';
import { gateRefusals, type GateEntry } from '../../src/audit/destination-names.js';
import { buildReport, renderReportText, reportJson } from '../../src/audit/report.js';
import { renderSuggestion } from '../../src/audit/suggest.js';
import { runStatus } from '../../src/commands/status.js';
import { parseConfig } from '../../src/config/load.js';
import { formatLog } from '../../src/schedule/daemon.js';
import { printJson, printLines, printText } from '../../src/text.js';
import { FakeKernel } from '../support/fake-kernel.js';

const T0 = 1_790_000_000;

/** Query names a container can send (DNS labels may carry any byte; the gate decodes them as latin1). */
const HOSTILE = [
  'x.example\n  - cidr: 198.51.100.66/32\n    ports: [443, 22]\n#',
  'cr.example\r  - domain: evil.example',
  '\x1b[2J\x1bcclear.example',
  '\x1b]0;owned\x07osc.example',
  '#hash.example',
  'colon.example: [1]',
  '"quote\'.example',
  'space example.com',
  'bücher.example',
  '-lead.example',
  '\x9b31mcsi.example',
  'bidi\u202e.example',
];
const GOOD = ['api.good.test', 'cdn.good.test'];
/** a line a terminal would act on, or a YAML line break that is not "\n" */
const RAW_CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202e]/;

const evil: ContainerInfo = {
  id: 'c3'.repeat(32),
  name: '/evil-1',
  image: 'evil:\x1b[31mlatest',
  labels: { 'com.docker.compose.project': 'shop\n  - domain: label.example', 'com.docker.compose.service': 'web\x1b]0;x\x07' },
  networks: [{ name: 'n', ipv4: '198.51.100.70', ipv6: null }],
  state: 'running',
};

function hostileHistory() {
  const names = [...HOSTILE, ...GOOD];
  // every name answered with its own address to the container, and refused once more
  const gate: GateEntry[] = names.flatMap((name, i) => [
    { time: T0 - 30, client: '198.51.100.70', name, type: 'A', refused: false, answers: [`203.0.113.${100 + i}`] },
    { time: T0 - 20, client: '198.51.100.70', name: `${name}.refused`, type: 'A', refused: true, answers: [] },
  ]);
  const records = names.map((_, i) => ({ family: 4 as const, src: '198.51.100.70', dst: `203.0.113.${100 + i}`, proto: 'tcp', port: '443', packets: 1, bytes: 60, lastAgo: 5 }));
  const history = applyCollection(emptyHistory(), { now: T0, read: ['containers4'], containers: [evil], domains: null, gate, modes: { containers: 'enforce', host: null }, records });
  return { history, gate };
}

describe('suggest with hostile query names (item 1)', () => {
  const { history, gate } = hostileHistory();
  const report = buildReport({ history, now: T0 + 10, since: 3600 });
  const text = renderSuggestion({ report, gateRefused: gateRefusals(gate, T0 - 3600, T0 + 10) });

  it('loaded as a config it yields exactly the entries it shows: the valid hostnames, nothing else', () => {
    const shown = [...text.matchAll(/^ {2}- domain: (.*)$/gm)].map((m) => m[1]);
    const config = parseConfig(text, 'suggest.yml');
    expect(config.domains.map((d) => d.name)).toEqual(GOOD);
    expect(shown).toEqual(GOOD);
    expect(config.cidrs).toEqual([]);
    expect(config.wildcards).toEqual([]);
  });

  it('every line is an entry, its ports, a comment or blank; no raw control character', () => {
    expect(text).not.toMatch(RAW_CONTROL);
    for (const line of text.trimEnd().split('\n')) expect(line).toMatch(/^(|allow:( \[\].*)?| {2}- domain: [a-z0-9.-]+| {4}ports: \[[0-9, "a-z/]+\]|\s*#.*)$/);
  });

  it('names that are not hostnames are quoted, escaped and counted in comments', () => {
    expect(text).toContain(`# ${HOSTILE.length * 2} names asked for or answered that are not hostnames`);
    expect(text).toContain('#   "\\"quote\'.example"');
    expect(text).toContain('#   "\\u001b]0;owned\\u0007osc.example"');
    expect(text).toContain('... and 14 more');
  });
});

describe('every command escapes network text (item 2)', () => {
  const { history } = hostileHistory();

  it('report: names, labels and images never forge a line or reach the terminal raw', () => {
    const text = renderReportText(buildReport({ history, now: T0 + 10, since: 3600 }));
    expect(text).not.toMatch(RAW_CONTROL);
    expect(text).toContain('x.example\\n  - cidr: 198.51.100.66/32');
    expect(text.split('\n').filter((l) => l.startsWith('  - domain'))).toEqual([]);
    // JSON stays valid and keeps the exact bytes
    const json = printJson(reportJson(buildReport({ history, now: T0 + 10, since: 3600 })), 2);
    expect(json).not.toMatch(RAW_CONTROL);
    expect(JSON.stringify(JSON.parse(json))).toContain(JSON.stringify(HOSTILE[10]!).slice(1, -1));
  });

  const dir = mkdtempSync(path.join(tmpdir(), 'egressfw-untrusted-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('status: refused names in the gate section are escaped', async () => {
    const config = path.join(dir, 'c.yml');
    writeFileSync(config, 'allow:\n  - domain: api.example.com\ndns:\n  servers: [192.0.2.53]\n  gate: {enabled: true}\n');
    const line = (name: string, who: string) =>
      JSON.stringify({ time: '2026-11-30T11:59:00.000Z', client: '172.17.0.2', container: { id: 'x', name: who }, name, type: 'A', verdict: 'refused', rcode: 'REFUSED', ips: [], cached: false, ms: 0, transport: 'udp' });
    let text = '';
    await runStatus(
      { config, stateDir: dir, json: false },
      {
        query: () => Promise.reject(new Error('no DNS in status')),
        readText: async () => null,
        observe: async () => ({ observed: new FakeKernel().observe(), missingTools: [] }),
        now: () => Date.parse('2026-11-30T12:00:00Z') / 1000,
        isRoot: true,
        out: (t) => (text += t),
        warn: () => {},
        gate: {
          readText: async () => null,
          probe: async () => ({ ok: true, ms: 0.4, detail: 'answering' }),
          dockerVersion: async () => '20.10.24',
          readLogs: async () => [line('\x1bc\x1b[32mevil.example\r\negressfw status: ENFORCED', 'box\n  forged: 0 allowed'), line('\x1b]8;;http://x\x07a.example', 'c')],
          nowMs: () => Date.parse('2026-11-30T12:00:00Z'),
        },
      },
    );
    expect(text).toContain('1x \\x1bc\\x1b[32mevil.example\\r\\negressfw status: ENFORCED');
    expect(text).toContain('box\\n  forged: 0 allowed');
    expect(text).not.toMatch(RAW_CONTROL);
    expect(text.split('\n').filter((l) => l.startsWith('egressfw status:'))).toHaveLength(1);
  });

  it('daemon log lines (text and JSON) escape names; JSON lines stay valid', () => {
    const fields = { name: '\x9b2J\u202eevil.example', error: 'a\nb' };
    const json = formatLog(true, new Date(T0 * 1000), 'x', fields);
    expect(json).not.toMatch(RAW_CONTROL);
    expect(JSON.parse(json)).toMatchObject(fields);
    expect(formatLog(false, new Date(T0 * 1000), 'x', fields)).not.toMatch(RAW_CONTROL);
  });

  it('the output helpers: lines escape their newlines, text keeps them, JSON stays JSON', () => {
    expect(printLines(['a\nb', 'c\x1b'])).toBe('a\\nb\nc\\x1b\n');
    expect(printText('one\ntwo\r\x1b[2J\x9b')).toBe('one\ntwo\\r\\x1b[2J\\x9b');
    expect(JSON.parse(printJson({ s: '\x9b\u202e\n' }))).toEqual({ s: '\x9b\u202e\n' });
    expect(printJson({ s: '\x9b' })).toBe('{"s":"\\u009b"}');
  });
});
