/** Which names the gate answers, and for which ports their IPs are opened. Pure. */
import type { DomainRule } from '../config/load.js';
import { sortPorts } from '../config/load.js';
import type { Port } from '../config/schema.js';

export interface Match {
  /** the config entries that allow the name ("api.example.com", "*.example.com"), sorted; shared (never mutated) */
  rules: string[];
  /** union of their ports */
  ports: Port[];
  /** any of them accepts private/loopback/metadata answers */
  allowPrivate: boolean;
}

/**
 * Exact entries match their own name; "*.example.com" matches every name
 * below example.com (any depth), not example.com itself. A name matched by
 * several entries gets the union of their ports.
 */
export class GatePolicy {
  private readonly exact = new Map<string, DomainRule>();
  private readonly zones = new Map<string, DomainRule>();
  private readonly deepest: number;
  /** bounded by the combinations of entries a name can match (an exact entry and the zones above it) */
  private readonly matches = new Map<string, Match>();

  constructor(exact: readonly DomainRule[], wildcards: readonly DomainRule[]) {
    for (const r of exact) this.exact.set(r.name, r);
    for (const r of wildcards) this.zones.set(r.name.slice(2), r);
    this.deepest = Math.max(0, ...[...this.zones.keys()].map((z) => z.split('.').length));
  }

  get size(): number {
    return this.exact.size + this.zones.size;
  }

  /** `name`: lowercase, no trailing dot (as parseQuery gives it). */
  match(name: string): Match | null {
    const found: DomainRule[] = [];
    const e = this.exact.get(name);
    if (e) found.push(e);
    if (this.zones.size > 0) {
      // every proper suffix of the name is a candidate zone
      let dot = name.indexOf('.');
      while (dot >= 0) {
        const zone = name.slice(dot + 1);
        if (zone.split('.').length <= this.deepest) {
          const z = this.zones.get(zone);
          if (z) found.push(z);
        }
        dot = name.indexOf('.', dot + 1);
      }
    }
    if (found.length === 0) return null;
    // One Match per set of entries, shared by every name it opens (cached answers keep it: no copy each)
    const key = found.length === 1 ? found[0]!.name : found.map((r) => r.name).sort().join(' ');
    let m = this.matches.get(key);
    if (!m) {
      m =
        found.length === 1
          ? { rules: [found[0]!.name], ports: found[0]!.ports, allowPrivate: found[0]!.allowPrivate }
          : { rules: found.map((r) => r.name).sort(), ports: sortPorts(found.flatMap((r) => r.ports)), allowPrivate: found.some((r) => r.allowPrivate) };
      this.matches.set(key, m);
    }
    return m;
  }
}
