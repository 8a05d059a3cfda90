/**
 * The shapes of the interface names Docker generates on a host, and whether an
 * interface pattern (iptables style: a name, or a prefix ending in "+") can match
 * one of them. Decided by intersecting the pattern with each shape, position by
 * position, so a pattern is judged by what it can match, not by a list of bad
 * patterns: "d+", "do+", "dock+" all reach docker0; "b+", "br+" every br-<id>;
 * "v+", "ve+" every veth. Pure.
 */

const HEX = '0123456789abcdef';
const ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** One character set per position. */
type Shape = { what: string; chars: string[] };
const shape = (what: string, ...parts: (string | [set: string, n: number])[]): Shape => ({
  what,
  chars: parts.flatMap((p) => (typeof p === 'string' ? [...p] : Array<string>(p[1]).fill(p[0]))),
});

export const DOCKER_INTERFACE_SHAPES: readonly Shape[] = [
  shape('the default bridge', 'docker0'),
  shape("Swarm's gateway bridge", 'docker_gwbridge'),
  shape('a user network bridge', 'br-', [HEX, 12]),
  shape("a container's veth", 'veth', [HEX, 7]),
  shape('an overlay VXLAN interface', 'vx-', [HEX, 6], '-', [ALNUM, 5]),
];

/**
 * A Docker-generated name `pattern` can match ("docker0", "br-000000000000"), with what it is;
 * null when it can match none.
 */
export function matchesDockerName(pattern: string): { example: string; what: string } | null {
  const prefix = pattern.endsWith('+');
  const p = prefix ? pattern.slice(0, -1) : pattern;
  for (const s of DOCKER_INTERFACE_SHAPES) {
    if (prefix ? p.length > s.chars.length : p.length !== s.chars.length) continue;
    if (![...p].every((c, i) => s.chars[i]!.includes(c))) continue;
    return { example: p + s.chars.slice(p.length).map((set) => set[0]).join(''), what: s.what };
  }
  return null;
}
