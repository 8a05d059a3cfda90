// Whether a lab suite can run here, and what to do when it cannot: skip locally, fail under CI.
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'vitest';

/** tool -> the Debian package that brings it (scripts/install-deps.sh installs them all) */
const BASE: Record<string, string> = {
  unshare: 'util-linux',
  nsenter: 'util-linux',
  flock: 'util-linux',
  ip: 'iproute2',
  iptables: 'iptables',
  ip6tables: 'iptables',
  ipset: 'ipset',
  nft: 'nftables',
  conntrack: 'conntrack',
  ufw: 'ufw',
  dnsmasq: 'dnsmasq-base',
  busybox: 'busybox-static',
  openssl: 'openssl',
  curl: 'curl',
};
const DOCKER: Record<string, string> = { dockerd: 'docker.io', docker: 'docker.io' };
const COMPOSE: Record<string, string> = { 'docker-compose': 'docker-compose', debootstrap: 'debootstrap' };
const DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

export interface LabNeeds {
  docker?: boolean;
  /** docker-compose and the nginx image (debootstrap) */
  compose?: boolean;
}

/** Why the lab cannot run here (empty: it can). Each reason names the fix. */
export function labBlockers(needs: LabNeeds = {}, env: { uid: number | undefined; has: (tool: string) => boolean } = { uid: uid(), has: installed }): string[] {
  const reasons: string[] = [];
  if (env.uid !== 0) reasons.push('not root: lab tests need root (network namespaces, iptables, dockerd); run them with sudo');
  const tools = { ...BASE, ...(needs.docker || needs.compose ? DOCKER : {}), ...(needs.compose ? COMPOSE : {}) };
  const missing = Object.entries(tools).filter(([t]) => !env.has(t));
  if (missing.length) {
    const pkgs = [...new Set(missing.map(([, p]) => p))];
    reasons.push(`missing: ${missing.map(([t]) => t).join(', ')} (packages ${pkgs.join(', ')}): run \`sudo bash scripts/install-deps.sh\``);
  }
  return reasons;
}

/** EFW_LAB_PRETEND_UID: lets test/unit/lab-requirements.test.ts see "not root" without dropping privileges. */
const uid = () => (process.env.EFW_LAB_PRETEND_UID ? Number(process.env.EFW_LAB_PRETEND_UID) : process.getuid?.());

function installed(tool: string): boolean {
  return DIRS.some((d) => {
    try {
      fs.accessSync(path.join(d, tool), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** CI=true (or any value but "", 0, false): a suite that cannot run is a failure, never a silent skip. */
export const inCi = (env: NodeJS.ProcessEnv = process.env) => !!env.CI && !['0', 'false'].includes(env.CI.toLowerCase());

/**
 * describe() for a suite that needs something of the machine: runs when
 * `reasons` is empty. Otherwise it is skipped with the reasons printed, or,
 * under CI, replaced by one failing test that names them: CI must not go
 * green by skipping (root, tools, packages).
 */
export function describeWhere(name: string, reasons: string[], fn: () => void, what = 'suite'): void {
  if (reasons.length === 0) {
    describe(name, fn);
    return;
  }
  if (inCi()) {
    describe(name, () => {
      it('can run here (CI=true: suites must run, not skip)', () => {
        throw new Error(`${what} "${name}" cannot run: ${reasons.join('; ')}`);
      });
    });
    return;
  }
  console.warn(`${what} "${name}" skipped: ${reasons.join('; ')}`);
  describe.skip(name, fn);
}

/** describe() for a lab suite: runs when the lab can run here (see describeWhere). */
export function labDescribe(name: string, needs: LabNeeds, fn: () => void): void {
  describeWhere(name, labBlockers(needs), fn, 'lab suite');
}
