import { conntrackDeleteBatch, parseConntrackSave, parseIpAddrJson, refusedFlows, type ContainerRules, type Flow, type HostRules } from '../plan/flows.js';
import type { Exec } from './exec.js';
import { withPrivateFile } from './files.js';

/** What cutting the refused flows did: how many per side, and why not (a note) when it could not. */
export interface FlowCut {
  host: number;
  containers: number;
  /** flows conntrack tracked when listed */
  tracked: number;
  notes: string[];
}

const firstLine = (s: string) => s.trim().split('\n')[0] ?? '';

/**
 * After an apply: list the tracked flows, judge them against the rules just
 * applied (src/plan/flows.ts) and delete the refused ones in one
 * `conntrack -R FILE` batch. Never throws: the rules are in force either way,
 * so a problem here is a note (the flows then end on their own).
 */
export async function cutRefusedFlows(exec: Exec, rules: { host: HostRules | null; containers: ContainerRules | null }, only: (f: Flow) => boolean = () => true): Promise<FlowCut> {
  const cut: FlowCut = { host: 0, containers: 0, tracked: 0, notes: [] };
  if (!rules.host && !rules.containers) return cut;
  const list = await exec(['conntrack', '-L', '-o', 'save']);
  if (list.exitCode === 127) {
    cut.notes.push('conntrack is not installed: connections opened before this sync to destinations it now refuses keep flowing until they end (`apt-get install conntrack`)');
    return cut;
  }
  if (list.exitCode !== 0) {
    cut.notes.push(`\`conntrack -L\` failed (${firstLine(list.stderr)}): connections opened before this sync were not checked`);
    return cut;
  }
  const addrs = await exec(['ip', '-j', '-d', 'addr', 'show']);
  if (addrs.exitCode !== 0) {
    cut.notes.push(`\`ip -j addr show\` failed (${firstLine(addrs.stderr)}): connections opened before this sync were not checked`);
    return cut;
  }
  const { flows } = parseConntrackSave(list.stdout);
  cut.tracked = flows.length;
  let ifaces;
  try {
    ifaces = parseIpAddrJson(addrs.stdout);
  } catch {
    cut.notes.push('`ip -j addr show` printed no JSON: connections opened before this sync were not checked');
    return cut;
  }
  const judged = refusedFlows({ flows, ifaces, ...rules });
  const refused = { host: judged.host.filter(only), containers: judged.containers.filter(only) };
  const all = [...refused.host, ...refused.containers];
  if (!all.length) return cut;
  const del = await withPrivateFile('delete.conntrack', conntrackDeleteBatch(all), (file) => exec(['conntrack', '-R', file]));
  if (del.exitCode !== 0) {
    cut.notes.push(`\`conntrack -R\` failed (${firstLine(del.stderr)}): some connections to destinations this sync refuses may keep flowing until they end`);
    return cut;
  }
  // A flow that ended between the listing and the delete is simply not there any more.
  cut.host = refused.host.length;
  cut.containers = refused.containers.length;
  return cut;
}
