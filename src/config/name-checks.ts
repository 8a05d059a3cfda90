import { domainToASCII } from 'node:url';

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export type NameCheck = { ok: true; name: string } | { ok: false; problem: string };

/**
 * Normalise and validate an exact hostname: lowercase, trailing dot removed,
 * IDN converted to punycode. Anything that is not letters, digits, hyphens
 * and dots is refused, so a name can never smuggle text into a command line.
 */
export function checkDomain(raw: string): NameCheck {
  if (raw.includes('*')) {
    return {
      ok: false,
      problem:
        'a wildcard must be a whole leading label, like "*.example.com" (it then needs the DNS gate, `dns.gate.enabled: true`); or list each name, or use the SNI proxy mode (`egressfw proxy --mode sni`)',
    };
  }
  if (/[\s'"`$;&|<>\\(){}\[\]!#,=]/.test(raw) || raw.startsWith('-')) {
    return { ok: false, problem: `not a hostname: ${JSON.stringify(raw)} (only letters, digits, "-" and "." are allowed)` };
  }
  let name = raw.trim().toLowerCase();
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (/[^\x00-\x7f]/.test(name)) {
    // Unicode (IDN) names become their punycode form, which is what DNS holds.
    const ascii = domainToASCII(name);
    if (!ascii) return { ok: false, problem: `not a valid internationalised hostname: ${JSON.stringify(raw)}` };
    name = ascii;
  }
  if (name.length === 0) return { ok: false, problem: 'hostname is empty' };
  if (name.length > 253) return { ok: false, problem: `hostname is ${name.length} characters; DNS allows at most 253` };
  const labels = name.split('.');
  if (labels.length < 2) return { ok: false, problem: `"${name}" is a single label; give the fully qualified name (e.g. api.example.com)` };
  for (const label of labels) {
    if (label.length > 63) return { ok: false, problem: `label "${label.slice(0, 20)}…" is ${label.length} characters; DNS allows at most 63` };
    if (!LABEL.test(label)) return { ok: false, problem: `not a hostname: ${JSON.stringify(raw)} (labels are letters, digits and inner hyphens)` };
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) {
    return { ok: false, problem: `"${raw}" looks like an IP address; use \`cidr: ${raw}\` for static addresses` };
  }
  return { ok: true, name };
}

/** Linux interface names (IFNAMSIZ): at most 15 chars, optional trailing "+" (a prefix; nft's "*"). */
export function checkInterface(raw: string): string | null {
  return /^[a-zA-Z0-9_.][a-zA-Z0-9_.-]{0,14}\+?$/.test(raw) && raw.length <= 16 ? null : `not an interface name: ${JSON.stringify(raw)} (e.g. docker0, br-+)`;
}
