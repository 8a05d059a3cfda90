import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { debianMirrors, machineDebianMirrors, parseListFile, parseSourcesFile, readAptSources } from '../../scripts/apt-sources.js';

// What scripts/fetch-docker.sh, the Node 18 fetch and the lab's nginx image take the Debian mirror from.

const DEB822 = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.net/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example.net/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main
`;

function etc(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'egressfw-apt-'));
  mkdirSync(path.join(dir, 'sources.list.d'));
  for (const [f, text] of Object.entries(files)) writeFileSync(path.join(dir, f), text);
  return dir;
}

describe('the Debian mirror from apt sources', () => {
  it('deb822: the archive and the security mirror, a vendor repository ignored', () => {
    expect(debianMirrors(parseSourcesFile(DEB822))).toEqual({ archive: 'http://mirror.example.net/debian', security: 'http://security.example.net/debian-security' });
  });

  it('one-line style: options, comments and deb-src skipped; no security line: the archive\'s sibling', () => {
    const list = `# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://ftp.example.org/debian trixie main contrib # a comment
`;
    expect(parseListFile(list)).toEqual([
      { uri: 'https://packages.cloud.google.com/apt', suites: ['cloud-sdk-bookworm'], components: ['main'] },
      { uri: 'http://ftp.example.org/debian', suites: ['trixie'], components: ['main', 'contrib'] },
    ]);
    expect(debianMirrors(parseListFile(list))).toEqual({ archive: 'http://ftp.example.org/debian', security: 'http://ftp.example.org/debian-security' });
  });

  it('a stanza with Enabled: no, and Ubuntu or vendor suites only: no Debian mirror', () => {
    // the archive's stanza disabled: only the security suite is left, which is no archive
    expect(debianMirrors(parseSourcesFile(DEB822.replace('Types: deb\n#', 'Types: deb\nEnabled: no\n#')))).toBeNull();
    expect(debianMirrors(parseListFile('deb http://archive.ubuntu.com/ubuntu noble main\ndeb http://archive.ubuntu.com/ubuntu noble-security main\n'))).toBeNull();
  });

  it('reads sources.list and sources.list.d/*.list|*.sources as apt does (other suffixes ignored); EFW_DEBIAN_MIRROR overrides', () => {
    const dir = etc({ 'sources.list.d/debian.sources': DEB822, 'sources.list.d/old.list.disabled-by-farm': 'deb http://wrong.example/debian bookworm main\n' });
    expect(readAptSources(dir).map((s) => s.uri)).toEqual(['http://mirror.example.net/debian', 'http://security.example.net/debian-security', 'https://deb.nodesource.com/node_20.x']);
    expect(machineDebianMirrors({}, dir).archive).toBe('http://mirror.example.net/debian');
    expect(machineDebianMirrors({ EFW_DEBIAN_MIRROR: 'http://other.example/debian/' }, dir)).toEqual({ archive: 'http://other.example/debian', security: 'http://other.example/debian-security' });
    const main = etc({ 'sources.list': 'deb http://main.example/debian sid main\n' });
    expect(machineDebianMirrors({}, main)).toEqual({ archive: 'http://main.example/debian', security: 'http://main.example/debian-security' });
  });

  it('none found: one clear error naming the files and the fix', () => {
    const dir = etc({ 'sources.list.d/ubuntu.sources': 'Types: deb\nURIs: http://archive.ubuntu.com/ubuntu\nSuites: noble\nComponents: main\n' });
    expect(() => machineDebianMirrors({}, dir)).toThrow(/no Debian mirror in .*sources\.list or .*sources\.list\.d\/\*\.list\|\*\.sources .*set EFW_DEBIAN_MIRROR=/);
  });

  it('fetch-docker.sh has no mirror host written into it, and asks apt-sources.ts', () => {
    const text = readFileSync('scripts/fetch-docker.sh', 'utf8');
    expect(text).not.toMatch(/https?:\/\//);
    expect(text).toContain('scripts/apt-sources.ts');
  });
});
