// Kernel-state texts and shell snippets the sections share. Everything here runs inside a lab namespace.

/** The FORWARD layout of a Docker 20.10+ host with one bridge (docker0); `extra` lines go before DOCKER-USER's RETURN. */
export function dockerSkeleton(extra: string[] = []): string {
  const decls = extra.filter((l) => l.startsWith(':'));
  const rules = extra.filter((l) => !l.startsWith(':'));
  return [
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD DROP [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':DOCKER - [0:0]',
    ':DOCKER-ISOLATION-STAGE-1 - [0:0]',
    ':DOCKER-ISOLATION-STAGE-2 - [0:0]',
    ':DOCKER-USER - [0:0]',
    ...decls,
    '-A FORWARD -j DOCKER-USER',
    '-A FORWARD -j DOCKER-ISOLATION-STAGE-1',
    '-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    '-A FORWARD -o docker0 -j DOCKER',
    '-A FORWARD -i docker0 ! -o docker0 -j ACCEPT',
    '-A FORWARD -i docker0 -o docker0 -j ACCEPT',
    '-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2',
    '-A DOCKER-ISOLATION-STAGE-1 -j RETURN',
    '-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP',
    '-A DOCKER-ISOLATION-STAGE-2 -j RETURN',
    ...rules,
    '-A DOCKER-USER -j RETURN',
    'COMMIT',
    '',
  ].join('\n');
}

export const EMPTY_FILTER = '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n';

/**
 * Remove what egressfw put in the kernel, keeping its ufw hook: EGRESSFW-HOST goes back to what ufw's load of the
 * marked block gives (DNS only), as after a `ufw reload`; the jump, EGRESSFW, the sets and the state go.
 * The next sync is then a first sync on a host whose ufw is already hooked.
 */
export function resetKeepHookScript(stateDir: string): string {
  return `
for f in 4 6; do
  if [ $f = 4 ]; then t=iptables; file=/etc/ufw/before.rules; else t=ip6tables; file=/etc/ufw/before6.rules; fi
  if $t -S EGRESSFW-HOST >/dev/null 2>&1; then
    { echo '*filter'; echo ':EGRESSFW-HOST - [0:0]'; grep '^-A EGRESSFW-HOST' $file || true; echo COMMIT; } | $t-restore --noflush
  fi
  while $t -D DOCKER-USER -m comment --comment "egressfw jump" -j EGRESSFW 2>/dev/null; do :; done
  while $t -D FORWARD -m comment --comment "egressfw jump" -j EGRESSFW 2>/dev/null; do :; done
  $t -F EGRESSFW 2>/dev/null; $t -X EGRESSFW 2>/dev/null
  $t -F EFW-LINEAR 2>/dev/null; $t -X EFW-LINEAR 2>/dev/null
done
for s in egressfw-v4 egressfw-v6 egressfw-v4-new egressfw-v6-new; do ipset destroy $s 2>/dev/null; done
rm -rf '${stateDir}'
true
`;
}

/** Take egressfw's hook out of ufw again (files from its backups, outgoing allow, reload), then reset the kernel. */
export function unhookScript(stateDir: string): string {
  return `set -e
for f in before before6; do
  if [ -e /etc/ufw/$f.rules.egressfw-backup ]; then cp /etc/ufw/$f.rules.egressfw-backup /etc/ufw/$f.rules; rm -f /etc/ufw/$f.rules.egressfw-backup; fi
done
ufw default allow outgoing >/dev/null
ufw reload >/dev/null
set +e
for t in iptables ip6tables; do $t -F EGRESSFW-HOST 2>/dev/null; $t -X EGRESSFW-HOST 2>/dev/null; done
${resetKeepHookScript(stateDir)}`;
}
