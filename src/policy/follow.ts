/**
 * Following Docker live (issue 18): Docker's events -> what to do with the source -> policy map.
 * Pure: the event parser, the model of the map the daemon last wrote, and the nft line of a change.
 * The daemon (src/schedule/policy-follow.ts) does the I/O.
 */
import { parseIp, type Family } from '../net/ip.js';
import { NFT_TABLE_REF, POLICY_NFT } from '../plan/kernel-names.js';

/** What an event means for the map. */
export type MapEvent =
  /** the container (re)started or joined a network: read its addresses and labels, map them */
  | { kind: 'inspect'; id: string; action: string; atMs: number }
  /** the container stopped or is gone: its addresses leave the map */
  | { kind: 'remove'; id: string; action: string; atMs: number };

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {});
const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const ID = /^[0-9a-f]{12,64}$/;

/** Pure: one object of GET /events -> a map event, or null (an event that moves no address, or one we cannot read). */
export function parseEvent(raw: unknown): MapEvent | null {
  const e = obj(raw);
  const type = str(e.Type);
  const action = str(e.Action);
  const actor = obj(e.Actor);
  const atMs = typeof e.timeNano === 'number' ? Math.floor(e.timeNano / 1e6) : typeof e.time === 'number' ? e.time * 1000 : 0;
  let id = '';
  if (type === 'container') id = str(actor.ID);
  // network connect/disconnect name the container in the attributes; create/destroy move no address
  else if (type === 'network' && (action === 'connect' || action === 'disconnect')) id = str(obj(actor.Attributes).container);
  if (!ID.test(id)) return null;
  if (type === 'container' && action === 'start') return { kind: 'inspect', id, action: `container ${action}`, atMs };
  if (type === 'container' && (action === 'die' || action === 'destroy')) return { kind: 'remove', id, action: `container ${action}`, atMs };
  // a disconnect may leave the container on other networks: read it again
  if (type === 'network') return { kind: 'inspect', id, action: `network ${action}`, atMs };
  return null;
}

export interface MapDelta {
  /** addresses whose member goes */
  delete: Record<Family, string[]>;
  /** members that come: "addr : jump chain" */
  add: Record<Family, string[]>;
}

/** a map element's key: the address before ` : jump ...` */
export const keyOf = (element: string) => element.slice(0, element.indexOf(' : '));
const familyOf = (element: string): Family => parseIp(keyOf(element))?.family ?? 4;

export const emptyDelta = (d: MapDelta) => !d.delete[4].length && !d.delete[6].length && !d.add[4].length && !d.add[6].length;

/**
 * The map as the daemon last wrote it, per container. A container's new members replace its old
 * ones; an address another container still holds in the model (its die event not seen yet) is
 * taken from it: the newest start wins, and the old owner's policy never stays on the address.
 */
export class MapModel {
  private byContainer = new Map<string, string[]>();
  private owner = new Map<string, string>();

  /** After a full sync: exactly what it wrote (container id -> its members). */
  reset(members: Map<string, string[]>): void {
    this.byContainer = new Map([...members].map(([id, m]) => [id, [...m]]));
    this.owner = new Map([...members].flatMap(([id, m]) => m.map((e) => [keyOf(e), id] as const)));
  }

  /** Pure on the model: the container's members become `next`; returns what to delete and add in the kernel. */
  update(id: string, next: string[]): MapDelta {
    const d: MapDelta = { delete: { 4: [], 6: [] }, add: { 4: [], 6: [] } };
    const old = this.byContainer.get(id) ?? [];
    const want = new Set(next);
    for (const e of old) {
      if (want.has(e)) continue;
      const k = keyOf(e);
      if (this.owner.get(k) === id) {
        this.owner.delete(k);
        // a changed verdict is a delete and an add of the same address
        d.delete[familyOf(e)].push(k);
      }
    }
    for (const e of next) {
      if (old.includes(e)) continue;
      const k = keyOf(e);
      const holder = this.owner.get(k);
      if (holder !== undefined && holder !== id) {
        this.byContainer.set(holder, (this.byContainer.get(holder) ?? []).filter((x) => keyOf(x) !== k));
        d.delete[familyOf(e)].push(k);
      }
      this.owner.set(k, id);
      d.add[familyOf(e)].push(e);
    }
    // an address deleted and added again (a changed verdict) is both: mapLine deletes first, in one transaction
    for (const f of [4, 6] as Family[]) d.delete[f] = [...new Set(d.delete[f])];
    if (next.length) this.byContainer.set(id, [...next]);
    else this.byContainer.delete(id);
    return d;
  }

  /**
   * A batch of updates in their order, as one net change: what each touched address maps to before
   * the batch against after it. A die and a start that reuses its address in one batch end as a
   * delete and an add of that address (one transaction, delete first); a start and a die of one
   * container cancel out. Applying the updates one by one and concatenating their deltas would not
   * do: an add followed by a delete of one address would be written delete-first, leaving it mapped.
   */
  apply(updates: readonly (readonly [id: string, next: string[]])[]): MapDelta {
    const before = new Map<string, string | undefined>();
    const touch = (k: string) => {
      if (!before.has(k)) before.set(k, this.elementOf(k));
    };
    for (const [id, next] of updates) {
      for (const e of this.byContainer.get(id) ?? []) touch(keyOf(e));
      for (const e of next) touch(keyOf(e));
      this.update(id, next);
    }
    const d: MapDelta = { delete: { 4: [], 6: [] }, add: { 4: [], 6: [] } };
    for (const [k, was] of before) {
      const now = this.elementOf(k);
      if (was === now) continue;
      if (was !== undefined) d.delete[familyOf(was)].push(k);
      if (now !== undefined) d.add[familyOf(now)].push(now);
    }
    return d;
  }

  /** the member the model holds for an address */
  private elementOf(k: string): string | undefined {
    const id = this.owner.get(k);
    return id === undefined ? undefined : this.byContainer.get(id)?.find((e) => keyOf(e) === k);
  }

  get size(): number {
    return this.owner.size;
  }

  /** the container's members now (a copy) */
  membersOf(id: string): string[] {
    return [...(this.byContainer.get(id) ?? [])];
  }

  /** the container holds members now */
  has(id: string): boolean {
    return this.byContainer.has(id);
  }
}

/** Pure: one nft transaction (one line for `nft -i`) for a delta. */
export function mapLine(d: MapDelta): string {
  const cmds: string[] = [];
  for (const f of [4, 6] as Family[]) {
    if (d.delete[f].length) cmds.push(`delete element ${NFT_TABLE_REF} ${POLICY_NFT.map[f]} { ${d.delete[f].join(', ')} }`);
  }
  for (const f of [4, 6] as Family[]) {
    if (d.add[f].length) cmds.push(`add element ${NFT_TABLE_REF} ${POLICY_NFT.map[f]} { ${d.add[f].join(', ')} }`);
  }
  return cmds.join('; ');
}
