/**
 * Docker's embedded resolver (127.0.0.11, user networks) and the gate. Pure.
 *
 * Measured in the lab (nft counters on PREROUTING and OUTPUT, udp/53):
 *   20.10, 26.1: it forwards from the container's namespace -> PREROUTING -> redirected to the gate.
 *   28.5 without daemon.json `dns`: from the host's namespace (OUTPUT) to the host's resolv.conf
 *     servers -> never sees the redirect: a way around the gate.
 *   28.5 with daemon.json `dns` (any non-loopback address): from the container's namespace again.
 * So `install --docker-dns` sets daemon.json `dns` to the upstream resolvers: with egressfw the
 * redirect catches it; without egressfw containers simply resolve as before.
 */
import { parseIp } from '../net/ip.js';

export const DAEMON_JSON = '/etc/docker/daemon.json';
export const DAEMON_JSON_BACKUP = '/etc/docker/daemon.json.egressfw-backup';
/** Written instead of a backup when there was no daemon.json: undo then removes the file. */
export const ABSENT_MARK = '# egressfw: there was no daemon.json\n';

const isLoopback = (ip: string) => ip.startsWith('127.') || ip === '::1';

type Json = Record<string, unknown>;

function parseDaemonJson(text: string | null): { ok: true; doc: Json } | { ok: false; problem: string } {
  if (text === null || !text.trim()) return { ok: true, doc: {} };
  try {
    const doc = JSON.parse(text) as unknown;
    if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return { ok: false, problem: `${DAEMON_JSON} is not a JSON object` };
    return { ok: true, doc: doc as Json };
  } catch (e) {
    return { ok: false, problem: `${DAEMON_JSON} is not valid JSON (${(e as Error).message}); fix it first (dockerd would not start either)` };
  }
}

/** The `dns` servers daemon.json sets that containers ask from their own namespace (non-loopback IPs). */
export function containerNsServers(text: string | null): string[] {
  const p = parseDaemonJson(text);
  if (!p.ok || !Array.isArray(p.doc.dns)) return [];
  return p.doc.dns.filter((s): s is string => typeof s === 'string' && parseIp(s) !== null && !isLoopback(s));
}

export type DockerDnsPlan =
  | { action: 'nothing'; message: string }
  | { action: 'write'; text: string; backup: string; message: string }
  | { action: 'error'; message: string };

/** `install --docker-dns`: daemon.json text now (null: none) and the upstream resolvers -> what to do. */
export function planDockerDns(current: string | null, upstream: string[]): DockerDnsPlan {
  const p = parseDaemonJson(current);
  if (!p.ok) return { action: 'error', message: p.problem };
  const have = containerNsServers(current);
  if (have.length) {
    return { action: 'nothing', message: `nothing to change: ${DAEMON_JSON} already sets dns ${JSON.stringify(have)}; Docker asks them from the containers' namespaces, where the gate's redirect catches the queries` };
  }
  const servers = upstream.filter((s) => !isLoopback(s));
  if (!servers.length) {
    return {
      action: 'error',
      message: `the host's resolvers (${upstream.join(', ') || 'none'}) are loopback addresses, which containers cannot use: set dns.servers in the egressfw config to your upstream resolvers and retry. Nothing was changed.`,
    };
  }
  const text = `${JSON.stringify({ ...p.doc, dns: servers }, null, 2)}\n`;
  return {
    action: 'write',
    text,
    backup: current ?? ABSENT_MARK,
    message: `set dns ${JSON.stringify(servers)} in ${DAEMON_JSON} (backup: ${DAEMON_JSON_BACKUP}). Restart Docker for it to take effect: systemctl restart docker (containers keep running with live-restore; others restart with it). If dockerd is started with --dns, remove that flag: dockerd refuses a setting given both ways.`,
  };
}

/** Undo (uninstall): the current text and the backup -> new text (null: remove the file), or null when nothing to undo. */
export function undoDockerDns(current: string | null, backup: string | null): { text: string | null } | null {
  if (backup === null) return null;
  const orig = backup === ABSENT_MARK ? ({ ok: true, doc: {} } as const) : parseDaemonJson(backup);
  const now = parseDaemonJson(current);
  if (!now.ok || !orig.ok) return { text: backup === ABSENT_MARK ? null : backup };
  // Keep whatever else changed since; only `dns` goes back to what it was.
  const doc: Json = { ...now.doc };
  if ('dns' in orig.doc) doc.dns = orig.doc.dns;
  else delete doc.dns;
  if (backup === ABSENT_MARK && Object.keys(doc).length === 0) return { text: null };
  return { text: `${JSON.stringify(doc, null, 2)}\n` };
}

/** What decides for Docker's embedded resolver besides daemon.json and the engine's version. */
export interface DockerDnsContext {
  /** the host's DNS goes to the gate (chain gate-host; host.enabled with the gate on) */
  hostRedirect: boolean;
  /** per-workload policies are in use: the gate judges a container's query by its own policy */
  policies: boolean;
}

/** `status`: does Docker's embedded resolver go through the gate? (version: the engine's, null when unknown) */
export function dockerDnsStatus(daemonJson: string | null, version: string | null, ctx: DockerDnsContext): { throughGate: boolean; detail: string } {
  const set = containerNsServers(daemonJson);
  if (set.length) return { throughGate: true, detail: `daemon.json dns ${JSON.stringify(set)}: asked from the containers, redirected to the gate` };
  const major = version ? Number(/^(\d+)/.exec(version)?.[1]) : NaN;
  if (Number.isFinite(major) && major < 27) return { throughGate: true, detail: `Docker ${version} asks upstream from the containers' namespaces: redirected to the gate` };
  const engine = `Docker ${version ?? '(version unknown)'}`;
  // 27+ may forward user-network DNS from the host's namespace: the host's redirect (gate-host) brings
  // it to the gate too, but as the host's query, judged by the host's list and admitted into the host's
  // sets. Without policies that list is the containers' list as well; with policies it is not.
  if (ctx.hostRedirect && !ctx.policies) {
    return { throughGate: true, detail: `${engine} may forward user-network DNS from the host's namespace, where the host's redirect brings it to the gate (judged by the top-level list, which containers get too)` };
  }
  if (ctx.hostRedirect) {
    return {
      throughGate: false,
      detail: `${engine} may forward user-network DNS from the host's namespace: the gate then judges it by the host's list, not by each container's policy. Run \`sudo egressfw install --docker-dns\` and restart Docker`,
    };
  }
  return {
    throughGate: false,
    detail: `${engine} may forward user-network DNS from the host's namespace, around the gate (host.enabled is false: the host's DNS is not redirected): run \`sudo egressfw install --docker-dns\` and restart Docker`,
  };
}
