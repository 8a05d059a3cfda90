// The real observe() and the audit reader against what a real kernel printed after a real `egressfw sync`
// (iptables-save, ip6tables-save, `ipset save`, `nft -j list`, the ufw files), iptables-nft and legacy, recorded in
// the lab by scripts/record-observe-fixtures.ts. The round trip: the planner wrote it, the kernel printed it, the
// parsers read it back as exactly what the planner wants (no change left to make).
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { computeRound } from '../../src/engine.js';
import { FAMILIES, HOST_CHAIN, NFT, NFT_CHAIN_SPEC, NFT_SET_TYPES, REFUSED_HOST_SET, SET } from '../../src/plan/kernel-names.js';
import { parseState } from '../../src/state-file.js';
import { readKernelRecords } from '../../src/system/audit-io.js';
import type { Exec } from '../../src/system/exec.js';
import { observe } from '../../src/system/observe.js';
import type { ObserveFixture } from '../../scripts/record-observe-fixtures.js';

const DIR = 'test/unit/fixtures/observe';
const fixtures = fs.readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();

/** The recorded kernel: the same argv gets the same output; anything else was never recorded (re-record). */
function replay(fx: ObserveFixture) {
  const exec: Exec = async (argv) => {
    const hit = fx.exec.find((c) => c.argv.join('\0') === argv.join('\0'));
    if (!hit) throw new Error(`not recorded: ${argv.join(' ')} (run scripts/record-observe-fixtures.ts)`);
    return { stdout: hit.stdout, stderr: hit.stderr, exitCode: hit.exitCode };
  };
  const readText = async (f: string) => {
    if (!(f in fx.files)) throw new Error(`not recorded: ${f}`);
    return fx.files[f]!;
  };
  return { exec, readText, onPath: async () => true, isRoot: true };
}

describe('observe() and the audit reader on recorded kernel output', () => {
  it('has both recordings: iptables-nft and iptables-legacy', () => {
    expect(fixtures).toEqual(['iptables-legacy.json', 'iptables-nft.json']);
  });

  for (const name of fixtures) {
    const fx = JSON.parse(fs.readFileSync(path.join(DIR, name), 'utf8')) as ObserveFixture;
    const legacy = name.includes('legacy');
    const config = parseConfig(fx.config, 'egressfw.yml');

    describe(`${fx.recorded.scenario} (${fx.recorded.iptables}, ${fx.recorded.nft})`, () => {
      it('reads the allowlist sets, EGRESSFW-HOST with its jump from ufw, and ufw', async () => {
        const { observed } = await observe(replay(fx), { ufw: true, docker: !legacy });
        expect(fx.recorded.iptables).toMatch(legacy ? /\(legacy\)/ : /\(nf_tables\)/);
        expect(observed.readable).toBe(true);
        for (const f of FAMILIES) expect(observed.sets[f]).toMatchObject({ exists: true, tmpExists: false, recordExists: true });
        expect(observed.sets[4].entries).toEqual(expect.arrayContaining(['203.0.113.10,tcp:443', '203.0.113.10,tcp:80', '203.0.113.11,tcp:443', '198.51.100.128/28,udp:123']));
        expect(observed.sets[6].entries).toEqual(expect.arrayContaining(['2001:db8:10::10,tcp:443']));
        for (const f of FAMILIES) {
          const chain = observed.tables[f].chains.get(HOST_CHAIN);
          expect(chain?.length, `${HOST_CHAIN} (IPv${f})`).toBeGreaterThan(2);
          expect(chain!.some((r) => r.includes(`--match-set ${SET[f]} dst,dst`))).toBe(true);
        }
        expect(observed.ufw).toMatchObject({ enabled: true, outputPolicy: 'REJECT' });
        if (legacy) expect(observed.nft).toBeNull();
        else {
          expect(observed.nft!.chain).toEqual(NFT_CHAIN_SPEC);
          expect([...observed.nft!.sets.keys()].sort()).toEqual(Object.keys(NFT_SET_TYPES).sort());
          expect(observed.nft!.sets.get(NFT.allow[4])).toEqual(expect.arrayContaining(['203.0.113.10 . tcp . 443']));
          expect([...observed.nft!.gateChains.keys()].sort()).toEqual([...NFT.gateChains].sort());
          expect(observed.nft!.ruleComments.every((c) => c.startsWith('egressfw '))).toBe(true);
        }
      });

      it('round trip: what sync wrote reads back as nothing left to change', async () => {
        const deps = replay(fx);
        const now = (JSON.parse(fx.state) as { lastSync: { at: number } }).lastSync.at;
        const { state } = parseState(fx.state, { now });
        const round = await computeRound(config, state, {
          query: async () => {
            throw new Error('no DNS in a replay');
          },
          readText: deps.readText,
          observe: (want) => observe(deps, want),
          now,
          resolve: false,
        });
        expect(round.plan.blockers).toEqual([]);
        expect(round.plan.ops).toEqual([]);
      });

      it("the audit reader: the host's record sets and each side's mode", async () => {
        const k = await readKernelRecords(replay(fx).exec);
        expect(k.notes).toEqual([]);
        expect(k.modes).toEqual({ containers: legacy ? null : 'enforce', host: 'enforce' });
        expect(k.read).toEqual(expect.arrayContaining(['host4', 'host6']));
        for (const f of FAMILIES) expect(fx.exec.some((c) => c.argv.join(' ') === `ipset save ${REFUSED_HOST_SET[f]}` && c.exitCode === 0)).toBe(true);
      });
    });
  }
});
