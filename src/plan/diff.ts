import type { Family } from '../net/ip.js';
import type { Desired } from './desired.js';
import { JUMP_RULE_SPEC } from './desired.js';
import { CHAIN, DOCKER_USER, FAMILIES, HOST_CHAIN, NFT_CHAIN_SPEC, NFT_SET_TYPES, POLICY_NFT, REFUSED_HOST_SET, SET, UFW_FILE } from './kernel-names.js';
import { NO_POLICY_OPS, ruleComment, STATIC_SETS, type NftDesired, type NftObserved, type PolicyOps } from './nft.js';
import type { FilterTable, Observed } from './observed.js';
import { extractBlock } from './observed.js';
import { upsertBlock } from './ufw-file.js';

export type Op =
  | { kind: 'set'; family: Family; name: string; exists: boolean; tmpExists: boolean; entries: string[]; added: string[]; removed: string[] }
  | { kind: 'chain'; family: Family; chain: string; rules: string[]; reason: string }
  /** the host's record set of refused connections: created when missing, never replaced (src/plan/audit-rules.ts) */
  | { kind: 'record-set'; family: Family; name: string }
  /** egressfw's nftables table: declare what is missing, rewrite the sets and/or the chain that differ */
  | { kind: 'nft'; create: boolean; sets: Family[]; chain: boolean; want: NftDesired; /** gate chains present but no longer wanted */ dropChains: string[]; added: Record<Family, number>; removed: Record<Family, number>; reason: string; /** per-workload policies: what changes (NO_POLICY_OPS: nothing) */ policy: PolicyOps }
  | { kind: 'nft-delete' }
  /** the pre-0.2 iptables layout (EGRESSFW chain jumped to from DOCKER-USER/FORWARD): removed once the nft table enforces */
  | { kind: 'legacy'; family: Family; deleteRules: string[]; dropChain: boolean }
  | { kind: 'ufw-block'; family: Family; file: string; before: string | null; after: string; text: string }
  | { kind: 'ufw-outgoing'; from: string; to: 'deny' | 'reject' }
  | { kind: 'ufw-enable' }
  | { kind: 'ufw-reload' };

/** Why `sync` would stop before any change. */
export type BlockerCode = 'missing-tools' | 'ufw-unreadable' | 'ufw-no-filter' | 'ufw-inactive' | 'unsupported';
export interface Blocker {
  code: BlockerCode;
  message: string;
}

export interface Plan {
  ops: Op[];
  /** conditions that stop `sync` before any change (the plan still shows what it would do) */
  blockers: Blocker[];
}

/** Ops on the host side (ufw and its chain), as opposed to the container table. */
export const isHostOp = (o: Op): boolean => o.kind.startsWith('ufw-') || o.kind === 'record-set' || (o.kind === 'chain' && o.chain === HOST_CHAIN);

const POLICY = { deny: 'DROP', reject: 'REJECT' } as const;

export const UFW_INACTIVE =
  'ufw is installed but not active, so the host would not be restricted. Enabling ufw also denies incoming connections by default: ' +
  'first allow what you need (e.g. `ufw allow OpenSSH`), then `ufw enable`; or set `host.enableUfw: true` to let egressfw enable it; ' +
  'or set `host.enabled: false` to manage containers only';

/**
 * ufw was switched off after egressfw had been enforcing: the host part must
 * wait for the operator, but the containers' rules do not depend on ufw and
 * keep being enforced and repaired.
 */
/** The DNS gate's chains are there exactly when wanted, with the wanted hook and rules. */
function gateChainsOk(want: NftDesired, have: NonNullable<Observed['nft']>): boolean {
  if (have.gateChains.size !== want.gate.length) return false;
  return want.gate.every((c) => {
    const h = have.gateChains.get(c.name);
    return (
      !!h && h.spec.type === c.spec.type && h.spec.hook === c.spec.hook && h.spec.prio === c.spec.prio && h.spec.policy === c.spec.policy &&
      h.ruleComments.length === c.rules.length && c.rules.every((r, i) => h.ruleComments[i] === ruleComment(r))
    );
  });
}

/** Pure: what the policy part of the table needs (null: nothing). */
export function diffPolicies(want: NftDesired['policies'], have: NftObserved | null): PolicyOps | null {
  const haveChains = have?.policyChains ?? new Map<string, string[]>();
  const haveMaps = have?.maps ?? new Map<string, string[]>();
  const wantSetNames = new Set(want ? [...Object.keys(want.sets), ...want.gateSets] : []);
  const isPolicySet = (n: string) => n.startsWith(POLICY_NFT.chainPrefix);
  const ops: PolicyOps = {
    sets: want ? Object.keys(want.sets).filter((n) => !sameMembers(want.sets[n]!, have?.sets.get(n))) : [],
    chains: want ? want.chains.filter((c) => !sameRuleComments(c.rules, haveChains.get(c.name))).map((c) => c.name) : [],
    mapDelete: { 4: [], 6: [] },
    mapAdd: { 4: [], 6: [] },
    dropChains: [...haveChains.keys()].filter((n) => !want?.chains.some((c) => c.name === n)),
    dropSets: [...(have?.sets.keys() ?? [])].filter((n) => isPolicySet(n) && !wantSetNames.has(n)),
    dropMaps: !want && FAMILIES.some((f) => haveMaps.has(POLICY_NFT.map[f])),
  };
  let declared = true;
  for (const f of FAMILIES) {
    const cur = haveMaps.get(POLICY_NFT.map[f]);
    if (want && !cur) declared = false;
    const delta = mapDelta(want?.map[f] ?? [], cur ?? []);
    ops.mapAdd[f] = delta.add;
    // a map about to be deleted whole needs no member deletes
    ops.mapDelete[f] = ops.dropMaps ? [] : delta.delete;
  }
  if (want && [...wantSetNames].some((n) => !have?.sets.has(n))) declared = false;
  const nothing = declared && !ops.sets.length && !ops.chains.length && !ops.dropChains.length && !ops.dropSets.length && !ops.dropMaps && FAMILIES.every((f) => !ops.mapAdd[f].length && !ops.mapDelete[f].length);
  return nothing ? null : ops;
}

const sameMembers = (want: string[], have: string[] | undefined) => !!have && have.length === want.length && [...want].sort().every((e, i) => e === have[i]);
const sameRuleComments = (rules: { tag: string; text: string }[], have: string[] | undefined) => !!have && have.length === rules.length && rules.every((r, i) => have[i] === ruleComment(r));

/** Pure: map members to delete (addresses) and add ("addr : jump chain"); a member whose verdict changes is both. */
export function mapDelta(want: string[], have: string[]): { add: string[]; delete: string[] } {
  const key = (e: string) => e.slice(0, e.indexOf(' : '));
  const haveByKey = new Map(have.map((e) => [key(e), e]));
  const wantByKey = new Map(want.map((e) => [key(e), e]));
  return {
    add: want.filter((e) => haveByKey.get(key(e)) !== e),
    delete: [...haveByKey].filter(([k, e]) => wantByKey.get(k) !== e).map(([k]) => k),
  };
}

/** Pure: what makes the nft table match: nothing, or one op. */
function diffNft(want: NftDesired | null, have: Observed['nft'], readable: boolean): Op[] {
  if (!want) return have ? [{ kind: 'nft-delete' }] : [];
  const sets = FAMILIES.filter((f) => {
    const cur = have?.sets.get(STATIC_SETS[f]);
    return !cur || cur.length !== want.sets[f].length || [...want.sets[f]].sort().some((e, i) => e !== cur[i]);
  });
  const c = have?.chain;
  const chainOk =
    !!c && c.type === NFT_CHAIN_SPEC.type && c.hook === NFT_CHAIN_SPEC.hook && c.prio === NFT_CHAIN_SPEC.prio && c.policy === NFT_CHAIN_SPEC.policy &&
    have!.ruleComments.length === want.rules.length && want.rules.every((r, i) => have!.ruleComments[i] === ruleComment(r)) &&
    gateChainsOk(want, have!);
  const declared = !!have && Object.keys(NFT_SET_TYPES).every((n) => have.sets.has(n));
  const policy = diffPolicies(want.policies, have);
  if (have && !sets.length && chainOk && declared && !policy) return [];
  const count = (f: Family, from: string[], minus: string[]) => {
    const m = new Set(minus);
    return from.filter((e) => !m.has(e)).length;
  };
  const cur = (f: Family) => have?.sets.get(STATIC_SETS[f]) ?? [];
  const reason = !have ? (readable ? 'missing' : 'not read') : !chainOk ? 'rules differ' : sets.length ? 'allowlist changed' : policy ? 'policies changed' : 'sets missing';
  return [
    {
      kind: 'nft',
      create: !have,
      sets,
      chain: !chainOk,
      want,
      dropChains: [...(have?.gateChains.keys() ?? [])].filter((n) => !want.gate.some((c) => c.name === n)),
      added: { 4: count(4, want.sets[4], cur(4)), 6: count(6, want.sets[6], cur(6)) },
      removed: { 4: count(4, cur(4), want.sets[4]), 6: count(6, cur(6), want.sets[6]) },
      reason,
      policy: policy ?? NO_POLICY_OPS,
    },
  ];
}

/** The pre-0.2 layout: jumps to EGRESSFW in DOCKER-USER or FORWARD, and the chain. */
function diffLegacy(family: Family, table: FilterTable): Op[] {
  const deleteRules = [DOCKER_USER, 'FORWARD'].flatMap((parent) => (table.chains.get(parent) ?? []).filter(isOurJump).map((r) => r.replace(/^-A /, '-D ')));
  const dropChain = table.chains.has(CHAIN);
  return deleteRules.length || dropChain ? [{ kind: 'legacy', family, deleteRules, dropChain }] : [];
}

export function withoutHost(plan: Plan): Plan {
  return {
    ops: plan.ops.filter((o) => !isHostOp(o)),
    blockers: plan.blockers.filter((b) => b.code !== 'ufw-inactive'),
  };
}

export const UFW_UNREADABLE =
  "ufw's state could not be read (is ufw installed? are /etc/ufw/ufw.conf, /etc/default/ufw, /etc/ufw/before.rules and before6.rules there?): " +
  '`apt-get install ufw`, or set `host.enabled: false` to manage containers only';

function diffSets(desired: Desired, observed: Observed): Op[] {
  const ops: Op[] = [];
  for (const family of FAMILIES) {
    const want = desired.sets[family];
    const have = observed.sets[family];
    const haveSet = new Set(have.entries);
    const wantSet = new Set(want);
    const added = want.filter((e) => !haveSet.has(e));
    const removed = have.entries.filter((e) => !wantSet.has(e));
    if (!have.exists || added.length > 0 || removed.length > 0) {
      ops.push({ kind: 'set', family, name: SET[family], exists: have.exists, tmpExists: have.tmpExists, entries: want, added, removed });
    }
    // EGRESSFW-HOST's last rule references it: created in the same ipset restore, before iptables.
    if (desired.hostRules && !have.recordExists) ops.push({ kind: 'record-set', family, name: REFUSED_HOST_SET[family] });
  }
  return ops;
}

const sameRules = (a: string[] | undefined, b: string[]) => a !== undefined && a.length === b.length && a.every((r, i) => r === b[i]);

const isOurJump = (rule: string) => rule.endsWith(` ${JUMP_RULE_SPEC}`);

function ufwOps(desired: Desired, observed: Observed, blockers: Blocker[]): { ufw: Op[]; reloads: boolean } {
  const ufw: Op[] = [];
  const want = desired.ufw;
  if (!want) return { ufw, reloads: false };
  const have = observed.ufw;
  if (!have) {
    if (observed.readable) blockers.push({ code: 'ufw-unreadable', message: UFW_UNREADABLE });
    return { ufw, reloads: false };
  }
  let blockChanged = false;
  for (const family of FAMILIES) {
    const text = have.files[family];
    const before = extractBlock(text, UFW_FILE[family]);
    if (before === want.blocks[family]) continue;
    const next = upsertBlock(text, want.blocks[family]);
    if (next === null) {
      blockers.push({ code: 'ufw-no-filter', message: `${UFW_FILE[family]} has no "*filter ... COMMIT" section to hook into; restore it from the ufw package (/usr/share/ufw/iptables/) and retry` });
      continue;
    }
    blockChanged = true;
    ufw.push({ kind: 'ufw-block', family, file: UFW_FILE[family], before, after: want.blocks[family], text: next });
  }
  const policyChanged = have.outputPolicy !== POLICY[want.outgoing];
  if (policyChanged) ufw.push({ kind: 'ufw-outgoing', from: have.outputPolicy, to: want.outgoing });
  if (!have.enabled) {
    if (want.enable) ufw.push({ kind: 'ufw-enable' });
    else {
      blockers.push({ code: 'ufw-inactive', message: UFW_INACTIVE });
    }
    return { ufw, reloads: want.enable };
  }
  // `ufw default ... outgoing` reloads everything itself (the new block too): reload only when it is not run.
  if (blockChanged && !policyChanged) ufw.push({ kind: 'ufw-reload' });
  return { ufw, reloads: blockChanged || policyChanged };
}

/** Pure: what must change to go from `observed` to `desired`. An empty ops list means nothing to do. */
export function diff(desired: Desired, observed: Observed): Plan {
  const blockers: Blocker[] = [];
  const ops: Op[] = [...diffSets(desired, observed)];
  const { ufw, reloads } = ufwOps(desired, observed, blockers);
  ops.push(...ufw);
  ops.push(...diffNft(desired.nft, observed.nft, observed.readable));
  for (const family of FAMILIES) {
    const table = observed.tables[family];
    ops.push(...diffLegacy(family, table));
    if (desired.hostRules) {
      const want = desired.hostRules[family];
      const have = table.chains.get(HOST_CHAIN);
      // A ufw reload re-declares EGRESSFW-HOST from the block (DNS only): refill it after.
      if (reloads || !sameRules(have, want)) {
        ops.push({ kind: 'chain', family, chain: HOST_CHAIN, rules: want, reason: reloads ? 'refill after ufw reload' : have ? 'rules differ' : 'missing' });
      }
    }
  }
  return { ops, blockers };
}
