// The Debian mirror this machine's apt already uses, for the scripts and tests that fetch packages from
// other Debian suites without installing them (scripts/fetch-docker.sh, test/support/node-runtimes.ts,
// the lab's nginx image). Read-only: the machine's apt setup is never written.
//
//   tsx scripts/apt-sources.ts     prints "MIRROR SECURITY_MIRROR" (e.g. "http://deb.debian.org/debian
//                                  http://deb.debian.org/debian-security"), or exits 1 naming the fix
//
// EFW_DEBIAN_MIRROR (and EFW_DEBIAN_SECURITY_MIRROR) override what the sources say.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface AptSource {
  uri: string;
  suites: string[];
  components: string[];
}

export interface DebianMirrors {
  /** the archive: dists/<suite> for every Debian suite (bookworm, trixie, sid, ...) */
  archive: string;
  /** where <suite>-security lives */
  security: string;
}

/** Debian's codenames and aliases: a source for one of these is Debian's archive (not Ubuntu's, not a vendor's). */
const DEBIAN_SUITES = new Set(['buster', 'bullseye', 'bookworm', 'trixie', 'forky', 'duke', 'sid', 'oldoldstable', 'oldstable', 'stable', 'testing', 'unstable', 'experimental']);

const suiteBase = (s: string) => s.replace(/[-/](updates|security|backports|proposed-updates)$/, '');
const trimUri = (u: string) => u.replace(/\/+$/, '');

/** Pure: one-line-style text (sources.list, *.list) -> its `deb` entries (deb-src, comments and options skipped). */
export function parseListFile(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line.startsWith('deb ') && !line.startsWith('deb\t')) continue;
    const rest = line.slice(4).replace(/^\s*\[[^\]]*\]/, '').trim().split(/\s+/);
    const [uri, suite, ...components] = rest;
    if (uri && suite) out.push({ uri: trimUri(uri), suites: [suite], components });
  }
  return out;
}

/** Pure: deb822 text (*.sources) -> its enabled `deb` entries, one per URI. */
export function parseSourcesFile(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let last = '';
    for (const line of stanza.split('\n')) {
      if (line.startsWith('#')) continue;
      const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
      if (m) fields.set((last = m[1]!.toLowerCase()), m[2]!.trim());
      else if (/^\s/.test(line) && last) fields.set(last, `${fields.get(last)} ${line.trim()}`);
    }
    const words = (k: string) => (fields.get(k) ?? '').split(/\s+/).filter(Boolean);
    if (!words('types').includes('deb') || /^(no|false|0)$/i.test(fields.get('enabled') ?? 'yes')) continue;
    for (const uri of words('uris')) out.push({ uri: trimUri(uri), suites: words('suites'), components: words('components') });
  }
  return out;
}

/**
 * Pure: the sources -> Debian's archive and security mirror. The archive is the first source for a Debian
 * suite (by name, not -security); the security mirror the first source for a *-security suite, else the
 * archive's sibling `…/debian-security` (Debian's own layout). Null when no source is Debian's.
 */
export function debianMirrors(sources: AptSource[]): DebianMirrors | null {
  const debian = sources.filter((s) => s.suites.some((x) => DEBIAN_SUITES.has(suiteBase(x))));
  const archive = debian.find((s) => s.suites.some((x) => !/-security$/.test(x)))?.uri;
  if (!archive) return null;
  const security = debian.find((s) => s.suites.some((x) => /-security$/.test(x)))?.uri ?? archive.replace(/\/debian$/, '/debian-security');
  return { archive, security };
}

/** The files apt reads (the same ones, by the same names: other suffixes such as *.disabled are ignored). */
export function readAptSources(etc = '/etc/apt'): AptSource[] {
  const read = (f: string) => {
    try {
      return fs.readFileSync(f, 'utf8');
    } catch {
      return null;
    }
  };
  const out: AptSource[] = [];
  const main = read(path.join(etc, 'sources.list'));
  if (main !== null) out.push(...parseListFile(main));
  let parts: string[] = [];
  try {
    parts = fs.readdirSync(path.join(etc, 'sources.list.d')).sort();
  } catch {
    /* no sources.list.d */
  }
  for (const f of parts) {
    const text = /^[A-Za-z0-9_.-]+\.(list|sources)$/.test(f) ? read(path.join(etc, 'sources.list.d', f)) : null;
    if (text !== null) out.push(...(f.endsWith('.list') ? parseListFile(text) : parseSourcesFile(text)));
  }
  return out;
}

export class NoDebianMirror extends Error {}

/** The machine's Debian mirrors (EFW_DEBIAN_MIRROR / EFW_DEBIAN_SECURITY_MIRROR first); throws naming the fix. */
export function machineDebianMirrors(env: NodeJS.ProcessEnv = process.env, etc = '/etc/apt'): DebianMirrors {
  const override = env.EFW_DEBIAN_MIRROR ? trimUri(env.EFW_DEBIAN_MIRROR) : undefined;
  const found = override ? null : debianMirrors(readAptSources(etc));
  const archive = override ?? found?.archive;
  if (!archive) {
    throw new NoDebianMirror(
      `no Debian mirror in ${etc}/sources.list or ${etc}/sources.list.d/*.list|*.sources (no enabled \`deb\` source for a Debian suite such as bookworm): add one, or set EFW_DEBIAN_MIRROR=http://MIRROR/debian`,
    );
  }
  const security = env.EFW_DEBIAN_SECURITY_MIRROR ? trimUri(env.EFW_DEBIAN_SECURITY_MIRROR) : (found?.security ?? archive.replace(/\/debian$/, '/debian-security'));
  return { archive, security };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const m = machineDebianMirrors();
    process.stdout.write(`${m.archive} ${m.security}\n`);
  } catch (e) {
    process.stderr.write(`apt-sources: ${(e as Error).message}\n`);
    process.exitCode = 1;
  }
}
