/**
 * The gate's cached answers: one map per record type keyed by the name as parsed (a flat string, no
 * per-query key to build), oldest first. Bounded by the gates' GateShare: the oldest answer goes first.
 */
export class AnswerCache<E extends { storedAt: number; expiresAt: number }> {
  private readonly byType = new Map<number, Map<string, E>>();

  get size(): number {
    let n = 0;
    for (const m of this.byType.values()) n += m.size;
    return n;
  }

  get(qtype: number, name: string): E | undefined {
    return this.byType.get(qtype)?.get(name);
  }

  delete(qtype: number, name: string): void {
    this.byType.get(qtype)?.delete(name);
  }

  /** stored as the newest (the caller trims: the cap is the process's, across gates; see share.ts) */
  set(qtype: number, name: string, e: E): void {
    let m = this.byType.get(qtype);
    if (!m) this.byType.set(qtype, (m = new Map()));
    m.delete(name);
    m.set(name, e);
  }

  /** the oldest answer goes (Map keeps insertion order: each map's first key is its oldest); false: empty */
  dropOldest(): boolean {
    let oldest: Map<string, E> | undefined;
    let at = Infinity;
    for (const m of this.byType.values()) {
      const first = m.values().next();
      if (!first.done && first.value.storedAt < at) [oldest, at] = [m, first.value.storedAt];
    }
    if (!oldest) return false;
    oldest.delete(oldest.keys().next().value as string);
    return true;
  }

  /** every answer with its type and name (deleting the current one while iterating is safe) */
  *entries(): Generator<[qtype: number, name: string, e: E]> {
    for (const [t, m] of this.byType) for (const [name, e] of m) yield [t, name, e];
  }

  /** answers expired at `now` go */
  prune(now: number): void {
    for (const m of this.byType.values()) for (const [k, v] of m) if (v.expiresAt <= now) m.delete(k);
  }
}
