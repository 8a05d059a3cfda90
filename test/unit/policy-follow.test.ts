import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { assignContainers, type InventoryContainer, type PolicyDesired } from '../../src/plan/policies.js';
import { mapLine, MapModel, parseEvent } from '../../src/policy/follow.js';
import { PolicyFollower, type FollowDeps } from '../../src/schedule/policy-follow.js';
import type { EventStreamHandlers } from '../../src/system/docker-events.js';

const ID = (n: number) => `${String(n).repeat(12)}${'a'.repeat(52)}`;
const containerEvent = (action: string, id: string, timeNano = 1_700_000_000_000_000_000) => ({ Type: 'container', Action: action, Actor: { ID: id, Attributes: { name: 'x' } }, timeNano });
const networkEvent = (action: string, container: string) => ({ Type: 'network', Action: action, Actor: { ID: 'f'.repeat(64), Attributes: { container, name: 'shop_default', type: 'bridge' } }, time: 1_700_000_000 });

describe('Docker events -> map events', () => {
  it('start and network connect/disconnect read the container again; die and destroy remove it; the rest moves no address', () => {
    expect(parseEvent(containerEvent('start', ID(1)))).toEqual({ kind: 'inspect', id: ID(1), action: 'container start', atMs: 1_700_000_000_000 });
    expect(parseEvent(containerEvent('die', ID(1)))).toMatchObject({ kind: 'remove', id: ID(1) });
    expect(parseEvent(containerEvent('destroy', ID(1)))).toMatchObject({ kind: 'remove' });
    expect(parseEvent(networkEvent('connect', ID(2)))).toEqual({ kind: 'inspect', id: ID(2), action: 'network connect', atMs: 1_700_000_000_000 });
    expect(parseEvent(networkEvent('disconnect', ID(2)))).toMatchObject({ kind: 'inspect', action: 'network disconnect' });
    expect(parseEvent(networkEvent('create', ''))).toBeNull();
    expect(parseEvent(containerEvent('exec_start', ID(1)))).toBeNull();
    expect(parseEvent({ Type: 'container', Action: 'start', Actor: { ID: '../../etc' } })).toBeNull();
    expect(parseEvent('not an object')).toBeNull();
  });

});

describe('the map model', () => {
  it('a container\'s members replace its old ones; an address still held by another (die not seen) is taken from it', () => {
    const m = new MapModel();
    m.reset(new Map([['a', ['198.51.100.2 : jump pol-ci']]]));
    // b starts on a's address with another policy before a's die event arrived
    const d = m.update('b', ['198.51.100.2 : jump pol-payments', '2001:db8::2 : jump pol-payments']);
    expect(d).toEqual({ delete: { 4: ['198.51.100.2'], 6: [] }, add: { 4: ['198.51.100.2 : jump pol-payments'], 6: ['2001:db8::2 : jump pol-payments'] } });
    expect(mapLine(d)).toBe('delete element inet egressfw policy4 { 198.51.100.2 }; add element inet egressfw policy4 { 198.51.100.2 : jump pol-payments }; add element inet egressfw policy6 { 2001:db8::2 : jump pol-payments }');
    // a's late die must not remove b's member
    expect(m.update('a', [])).toEqual({ delete: { 4: [], 6: [] }, add: { 4: [], 6: [] } });
    expect(m.update('b', [])).toEqual({ delete: { 4: ['198.51.100.2'], 6: ['2001:db8::2'] }, add: { 4: [], 6: [] } });
    expect(m.size).toBe(0);
  });

  it('a changed policy is a delete and an add of the same address, in one line (delete first)', () => {
    const m = new MapModel();
    m.reset(new Map([['a', ['198.51.100.2 : jump pol-ci']]]));
    expect(mapLine(m.update('a', ['198.51.100.2 : jump pol-host']))).toBe('delete element inet egressfw policy4 { 198.51.100.2 }; add element inet egressfw policy4 { 198.51.100.2 : jump pol-host }');
  });
});

describe('the follower', () => {
  const config = parseConfig('policies:\n  ci:\n    allow: [{ domain: github.com }]\n  payments:\n    allow: [{ domain: api.stripe.com }]\ncontainers:\n  default: none\n', 'x.yml');
  function harness(containers: Record<string, InventoryContainer>, failWrites = 0) {
    let h: EventStreamHandlers | undefined;
    const written: string[] = [];
    const logs: [string, Record<string, unknown> | undefined][] = [];
    let resyncs = 0;
    let now = 1_700_000_000_020;
    const inspected: string[] = [];
    const lists: string[][] = [];
    /** ids the list leaves out (a dockerd whose snapshot lags) */
    const hidden = new Set<string>();
    /** ms a read and a write take on the fake clock */
    const cost = { read: 0, write: 0 };
    /** while set, list answers wait for it: events that arrive meanwhile form the next batch */
    let gate: { promise: Promise<void>; open: () => void } | undefined;
    const deps: FollowDeps = {
      watch: (handlers) => {
        h = handlers;
        return { close: () => {} };
      },
      inspect: async (id) => {
        inspected.push(id);
        now += cost.read;
        return containers[id] ?? null;
      },
      list: async (ids) => {
        lists.push(ids);
        now += cost.read;
        await gate?.promise;
        return ids.flatMap((id) => (containers[id] && !hidden.has(id) ? [containers[id]] : []));
      },
      write: async (cmds) => {
        if (failWrites-- > 0) throw new Error('Error: Could not process rule: No such file or directory');
        now += cost.write;
        written.push(cmds);
      },
      resync: async () => {
        resyncs++;
        return null;
      },
      exclusive: (fn) => fn(),
      config: () => config,
      log: (event, fields) => logs.push([event, fields]),
      nowMs: () => now,
      setTimer: (fn) => {
        fn();
        return 0;
      },
      clearTimer: () => {},
    };
    const f = new PolicyFollower(deps);
    f.start();
    const hold = () => {
      let open = () => {};
      const promise = new Promise<void>((r) => (open = r));
      gate = { promise, open };
    };
    const release = () => {
      gate?.open();
      gate = undefined;
    };
    return { f, h: () => h!, written, logs, resyncs: () => resyncs, tick: (ms: number) => (now += ms), inspected, lists, hidden, hold, release, cost };
  }

  it('maps a started container by its label, removes it when it dies, and logs the time from Docker\'s event', async () => {
    const c = { id: ID(1), name: 'job', labels: { 'egressfw.policy': 'ci' }, addresses: ['198.51.100.9'] };
    const t = harness({ [ID(1)]: c });
    t.h().onOpen();
    t.cost.read = 4;
    t.cost.write = 2;
    t.h().onEvent(containerEvent('start', ID(1), 1_700_000_000_000 * 1e6));
    await t.f.idle();
    expect(t.written).toEqual(['add element inet egressfw policy4 { 198.51.100.9 : jump pol-ci }']);
    // 20 ms from Docker's stamp to the stream, then 4 reading and 2 writing
    expect(t.logs.find(([e, f]) => e === 'policy-map' && f?.container === 'job')?.[1]).toMatchObject({ policy: 'ci', by: 'label egressfw.policy', ms: 26, streamMs: 20, waitMs: 0, readMs: 4, writeMs: 2 });
    t.h().onEvent(containerEvent('die', ID(1)));
    await t.f.idle();
    expect(t.written[1]).toBe('delete element inet egressfw policy4 { 198.51.100.9 }');
    expect(t.f.latencies).toEqual([26]);
  });

  it('a network connect of a container not mapped yet is left to its start event (no inspect while dockerd starts it)', async () => {
    const t = harness({ [ID(4)]: { id: ID(4), name: 'svc', labels: { 'egressfw.policy': 'ci' }, addresses: ['198.51.100.12'] } });
    const inspected = t.inspected;
    t.h().onOpen();
    t.h().onEvent(networkEvent('connect', ID(4)));
    await t.f.idle();
    expect(inspected).toEqual([]);
    t.h().onEvent(containerEvent('start', ID(4)));
    await t.f.idle();
    // a later connect (a second network) of a mapped container is read again
    t.h().onEvent(networkEvent('connect', ID(4)));
    await t.f.idle();
    // the start read it with the list; the later connect with an inspect (it may change its networks under its lock)
    expect(t.lists).toEqual([[ID(4)]]);
    expect(inspected).toEqual([ID(4)]);
    expect(t.written).toEqual(['add element inet egressfw policy4 { 198.51.100.12 : jump pol-ci }']);
  });

  it('a container given nothing writes nothing; a failed write and a lost stream each read the full inventory again', async () => {
    const t = harness({ [ID(2)]: { id: ID(2), name: 'plain', labels: {}, addresses: ['198.51.100.10'] }, [ID(3)]: { id: ID(3), name: 'ci', labels: { 'egressfw.policy': 'ci' }, addresses: ['198.51.100.11'] } }, 1);
    t.h().onOpen();
    await t.f.idle();
    expect(t.resyncs()).toBe(1);
    t.h().onEvent(containerEvent('start', ID(2)));
    await t.f.idle();
    expect(t.written).toEqual([]);
    t.h().onEvent(containerEvent('start', ID(3)));
    await t.f.idle();
    expect(t.resyncs()).toBe(2);
    expect(t.logs.some(([e, f]) => e === 'error' && f?.then === 'full inventory')).toBe(true);
    t.h().onClose('the stream ended (dockerd stopped or restarted?)');
    // reconnect (the fake timer fires at once), then open: full inventory again
    t.h().onOpen();
    await t.f.idle();
    expect(t.resyncs()).toBe(3);
    expect(t.logs.some(([e, f]) => e === 'docker-events' && f?.state === 'lost')).toBe(true);
  });

  describe('batches: events that arrive while a read is in flight go together', () => {
    // ids of 64 hex digits for many containers
    const big = (k: number) => `b${k.toString(16).padStart(63, '0')}`;
    const job = (k: number, policy = 'ci', addr = `198.51.100.${k}`): InventoryContainer => ({ id: big(k), name: `job${k}`, labels: { 'egressfw.policy': policy }, addresses: [addr] });

    it('a burst of 100 starts: one list call and one nft transaction for the 99 that came during the first read', async () => {
      const cs = Object.fromEntries(Array.from({ length: 100 }, (_, k) => [big(k), { ...job(k + 1), id: big(k) }]));
      const t = harness(cs);
      t.h().onOpen();
      await t.f.idle();
      t.hold();
      t.h().onEvent(containerEvent('start', big(0), 1_700_000_000_000 * 1e6));
      await Promise.resolve();
      // the first batch is reading; the other 99 arrive meanwhile
      for (let k = 1; k < 100; k++) t.h().onEvent(containerEvent('start', big(k), 1_700_000_000_000 * 1e6));
      t.release();
      await t.f.idle();
      expect(t.lists.map((l) => l.length)).toEqual([1, 99]);
      expect(t.inspected).toEqual([]);
      expect(t.written).toHaveLength(2);
      expect(t.written[1]).toMatch(/^add element inet egressfw policy4 \{ 198\.51\.100\.2 : jump pol-ci, .* 198\.51\.100\.100 : jump pol-ci \}$/);
      expect(t.f.counts).toEqual({ batches: 2, lists: 2, inspects: 0, writes: 2 });
      // every container still gets its own line and its latency
      expect(t.logs.filter(([e, f]) => e === 'policy-map' && typeof f?.ms === 'number')).toHaveLength(100);
      expect(t.f.latencies).toHaveLength(100);
    });

    it('a die and then a start that reuses its address, in one batch: the new container\'s policy only, in one transaction', async () => {
      const old = job(1, 'ci', '198.51.100.7');
      const reuser = job(2, 'payments', '198.51.100.7');
      const t = harness({ [big(2)]: reuser, [big(3)]: job(3) });
      // the last sync mapped the old container on the address
      t.f.synced(assignContainers(config, [old]) as PolicyDesired);
      t.hold();
      t.h().onEvent(containerEvent('start', big(3)));
      await Promise.resolve();
      t.h().onEvent(containerEvent('die', big(1)));
      t.h().onEvent(containerEvent('start', big(2)));
      t.release();
      await t.f.idle();
      expect(t.written[1]).toBe('delete element inet egressfw policy4 { 198.51.100.7 }; add element inet egressfw policy4 { 198.51.100.7 : jump pol-payments }');
      expect(t.written).toHaveLength(2);
      // the old owner's late die (seen again) moves nothing: the address is the newcomer's
      t.h().onEvent(containerEvent('die', big(1)));
      await t.f.idle();
      expect(t.written).toHaveLength(2);
    });

    it('a start and a die of one container in one batch write nothing; a start the list does not show running is inspected', async () => {
      const t = harness({ [big(4)]: job(4), [big(5)]: job(5) });
      t.hold();
      t.h().onEvent(containerEvent('start', big(6)));
      await Promise.resolve();
      t.h().onEvent(containerEvent('start', big(4)));
      t.h().onEvent(containerEvent('die', big(4)));
      t.hidden.add(big(5));
      t.h().onEvent(containerEvent('start', big(5)));
      t.release();
      await t.f.idle();
      // big(6) is gone (inspected: null); big(5) hidden from the list, found by its inspect
      expect(t.inspected.sort()).toEqual([big(5), big(6)].sort());
      expect(t.written).toEqual(['add element inet egressfw policy4 { 198.51.100.5 : jump pol-ci }']);
    });

    it('a failed read of a batch reads the full inventory (the batch\'s events are not dropped silently)', async () => {
      const t = harness({});
      t.f['deps'].list = async () => {
        throw new Error('dockerd at /run/docker.sock did not answer GET /containers/json within 5000 ms');
      };
      t.h().onEvent(containerEvent('start', big(7)));
      await t.f.idle();
      expect(t.resyncs()).toBe(1);
      expect(t.logs.some(([e, f]) => e === 'error' && f?.then === 'full inventory')).toBe(true);
    });
  });
});
