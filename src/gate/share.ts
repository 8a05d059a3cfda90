/**
 * What the gates of one process share, so that their caps hold for the process whatever the number
 * of per-workload policies: each policy has a gate of its own (its names, its cache), and with a cap
 * per gate the process would hold (policies + 1) x dns.gate.cacheSize answers and as many fetches.
 * A compromised dependency in every workload, flooding names under each policy's wildcards, would
 * then grow the gate's heap with the number of policies until it died, and every container lost DNS.
 *
 * The cache cap is fair: over it, the oldest answer of the LARGEST cache goes. A flood fills its own
 * gate's cache and then evicts from it; the other policies keep theirs. The fetch cap counts every
 * name being fetched upstream by any gate of the process. Pure.
 */

/** An answer cache as the share sees it (AnswerCache). */
export interface SharedCache {
  readonly size: number;
  /** the oldest answer goes; false: it was empty */
  dropOldest(): boolean;
}

export class GateShare {
  private readonly caches = new Set<SharedCache>();
  /** distinct names being fetched upstream now, by every gate of the process */
  inflight = 0;

  join(cache: SharedCache): void {
    this.caches.add(cache);
  }

  /** a gate that is no longer used (its policy left the config): its answers no longer count */
  leave(cache: SharedCache): void {
    this.caches.delete(cache);
  }

  get cacheEntries(): number {
    let n = 0;
    for (const c of this.caches) n += c.size;
    return n;
  }

  /** Oldest answers of the largest cache go until at most `limit` are held in all; returns how many went. */
  trim(limit: number): number {
    let total = this.cacheEntries;
    let dropped = 0;
    while (total > limit) {
      let largest: SharedCache | undefined;
      for (const c of this.caches) if (!largest || c.size > largest.size) largest = c;
      if (!largest || !largest.dropOldest()) break;
      total--;
      dropped++;
    }
    return dropped;
  }
}
