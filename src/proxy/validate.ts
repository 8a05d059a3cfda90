/**
 * Checks for everything the proxy config puts into generated compose/nginx
 * files. Pure. Each returns null when fine, or a message naming the fix: no
 * string from the config reaches a YAML or nginx file without passing here.
 */
import { checkDomain } from '../config/name-checks.js';
import { ipEchoZone, isPublicSuffix, suffixesBelow } from '../net/public-suffix.js';

/** Compose service and network names we accept (stricter than compose: no leading "." "_" "-"). */
const COMPOSE_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

export function checkComposeName(raw: string, what: 'service' | 'network'): string | null {
  return COMPOSE_NAME.test(raw)
    ? null
    : `not a compose ${what} name: ${JSON.stringify(raw)} (letters, digits, "_", "." and "-", starting with a letter or digit, at most 63)`;
}

// Docker's reference grammar (distribution/reference), anchored.
const HOST_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const REGISTRY = `${HOST_COMPONENT}(?:\\.${HOST_COMPONENT})*(?::[0-9]{1,5})?`;
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const IMAGE_REF = new RegExp(
  `^(?:(${REGISTRY})/)?(${PATH_COMPONENT}(?:/${PATH_COMPONENT})*)(?::([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(sha256:[a-f0-9]{64}))?$`,
);

/**
 * An image reference that is pinned: a version tag (not "latest") or a
 * sha256 digest, so the proxies do not change under you on the next pull.
 */
export function checkImageRef(raw: string): string | null {
  const m = raw.length <= 255 ? IMAGE_REF.exec(raw) : null;
  if (!m) return `not a Docker image reference: ${JSON.stringify(raw)} (e.g. nginx:1.28.0-bookworm or registry.example.com/nginx@sha256:<64 hex>)`;
  const [, , , tag, digest] = m;
  if (!digest && (!tag || tag === 'latest')) {
    return `image ${JSON.stringify(raw)} is not pinned: give a version tag (e.g. nginx:1.28.0-bookworm) or a digest (@sha256:...)`;
  }
  return null;
}

export type WildcardCheck = { ok: true; name: string } | { ok: false; problem: string };

/**
 * "*.example.com": a "*." prefix, then an exact hostname (at least two labels), normalised like
 * allow[].domain. The zone must not itself be a public suffix (Public Suffix List, ICANN and
 * private sections: "co.uk", "github.io", "s3.amazonaws.com"): below a suffix anyone can
 * register a name, so "*.github.io" would allow every GitHub Pages site, an attacker's included.
 */
export function checkWildcard(raw: string): WildcardCheck {
  const t = raw.trim();
  if (!t.startsWith('*.')) return { ok: false, problem: `a wildcard must look like "*.example.com" (got ${JSON.stringify(raw)}); exact names go in allow[].domain` };
  const rest = checkDomain(t.slice(2));
  if (!rest.ok) return { ok: false, problem: `${JSON.stringify(raw)}: after "*.": ${rest.problem}` };
  if (isPublicSuffix(rest.name)) {
    return {
      ok: false,
      problem: `${JSON.stringify(raw)}: ${rest.name} is a public suffix (anyone can register a name under it), so the wildcard would allow names anyone controls; use a zone you own, like "*.yourname.${rest.name}", or list the exact names`,
    };
  }
  // Not a suffix itself, but with suffixes below it: the zone spans many owners.
  const below = suffixesBelow(rest.name);
  if (below.count > 0) {
    return {
      ok: false,
      problem: `${JSON.stringify(raw)}: the Public Suffix List has ${below.count} suffix${below.count === 1 ? '' : 'es'} below ${rest.name} (${below.examples.join(', ')}${below.count > below.examples.length ? ', ...' : ''}) where anyone can own names: the wildcard spans many owners; use a zone inside one registrable domain, or list the exact names`,
    };
  }
  const echo = ipEchoZone(rest.name);
  if (echo) {
    return {
      ok: false,
      problem: `${JSON.stringify(raw)}: ${echo} answers every name below it with the IP address written in the name, so the wildcard would allow every address; list the exact names you need`,
    };
  }
  return { ok: true, name: `*.${rest.name}` };
}
