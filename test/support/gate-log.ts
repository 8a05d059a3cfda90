import type { ContainerRef } from '../../src/gate/attribution.js';
import type { QueryEvent } from '../../src/gate/gate.js';
import { queryLine } from '../../src/gate/log.js';

/** A gate log line as the gate itself writes it (src/gate/log.ts), never a hand-spelled copy of the format. */
export function gateLogLine(e: { at: number; client: string; name: string; verdict: QueryEvent['verdict']; ips?: string[]; type?: string }, container?: ContainerRef): string {
  return queryLine(
    {
      at: e.at,
      client: e.client,
      transport: 'udp',
      name: e.name,
      type: e.type ?? 'A',
      verdict: e.verdict,
      rcode: e.verdict === 'refused' ? 'REFUSED' : 'NOERROR',
      ips: e.ips ?? [],
      cached: false,
      ms: 1,
    },
    container,
  );
}
