import { z } from 'zod';
import { emptyState, type State } from '../resolve/merge.js';
import path from 'node:path';

export { DEFAULT_STATE_DIR } from '../defaults.js';
export const stateFile = (dir: string) => path.join(dir, 'state.json');

const ipState = z.object({ firstSeen: z.number(), lastSeen: z.number(), ttl: z.number() });
const stateSchema = z.object({
  version: z.literal(1),
  domains: z.record(z.string(), z.object({ ips: z.record(z.string(), ipState), status: z.string(), lastOk: z.number().optional() })),
  lastSync: z.object({ at: z.number(), ok: z.boolean(), message: z.string() }).optional(),
  enforcedSince: z.number().optional(),
  original: z.object({ ufwOutputPolicy: z.string().optional(), ufwEnabled: z.boolean().optional(), createdChains: z.array(z.string()).optional() }).optional(),
});

/** Pure: saved text -> State. A missing file is a first run; a damaged one is reported and ignored. */
export function parseState(text: string | null): { state: State; warning?: string } {
  if (text === null) return { state: emptyState() };
  try {
    const parsed = stateSchema.safeParse(JSON.parse(text));
    if (parsed.success) return { state: parsed.data as State };
    return { state: emptyState(), warning: `state file is not in the expected format (${parsed.error.issues[0]?.message}); starting without last-known-good IPs` };
  } catch (e) {
    return { state: emptyState(), warning: `state file is not valid JSON (${(e as Error).message}); starting without last-known-good IPs` };
  }
}
