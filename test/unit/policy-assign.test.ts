import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { assignPolicy, globMatches, policiesInUse } from '../../src/policy/assign.js';
import { problems } from '../support/config.js';

const CONFIG = `allow:
  - domain: deb.debian.org
policies:
  payments:
    allow:
      - domain: api.stripe.com
      - cidr: 192.0.2.0/24
        ports: ["8443/tcp"]
  ci:
    allow:
      - domain: github.com
      - domain: GitHub.com.
        ports: [22]
containers:
  default: none
  assign:
    - policy: payments
      match: { project: shop, service: api-wrapper }
    - policy: ci
      match: { label: "com.example.role=ci" }
    - policy: none
      match: { name: "scratch-*" }
    - policy: typo
      match: { label: "team" }
`;

const compose = (project: string, service: string, extra: Record<string, string> = {}) => ({
  name: `${project}-${service}-1`,
  labels: { 'com.docker.compose.project': project, 'com.docker.compose.service': service, ...extra },
});

describe('policies in the config', () => {
  const c = parseConfig(CONFIG, 'p.yml');

  it('loads each policy as its own allow list, sorted, duplicates merged', () => {
    expect(c.policies.map((p) => p.name)).toEqual(['ci', 'payments']);
    expect(c.policies[0]!.domains).toEqual([{ name: 'github.com', allowPrivate: false, ports: [{ port: 22, proto: 'tcp' }, { port: 443, proto: 'tcp' }] }]);
    expect(c.policies[1]!.cidrs).toEqual([{ cidr: '192.0.2.0/24', family: 4, ports: [{ port: 8443, proto: 'tcp' }] }]);
    expect(c.domains.map((d) => d.name)).toEqual(['deb.debian.org']);
    expect(c.containers.default).toBe('none');
    expect(c.containers.policyLabel).toBe(true);
    expect(c.containers.assign[2]).toEqual({ index: 2, policy: 'none', match: { name: 'scratch-*' } });
    expect(c.containers.assign[1]!.match.label).toEqual({ key: 'com.example.role', value: 'ci' });
  });

  it('warns, naming the entry, when an assignment names no defined policy', () => {
    expect(c.warnings).toEqual([expect.stringMatching(/^containers\.assign\[3\]\.policy: no policy "typo" is defined: the containers it selects get nothing/)]);
  });

  it('refuses bad and reserved policy names, empty matches and unknown match keys', () => {
    expect(problems('policies:\n  Pay_ments:\n    allow: []\n')[0]).toMatch(/not a policy name/);
    expect(problems('policies:\n  host:\n    allow: []\n')[0]).toMatch(/"host" is reserved/);
    expect(problems('containers:\n  assign:\n    - policy: x\n      match: {}\n')[0]).toMatch(/give at least one of project, service, label, name/);
    expect(problems('containers:\n  assign:\n    - policy: x\n      match: { image: nginx }\n')[0]).toMatch(/unknown key "image"/);
    expect(problems('containers:\n  default: "Bad Name"\n')[0]).toMatch(/not a policy name/);
    expect(problems('policies:\n  p:\n    allow:\n      - domain: "*.example.com"\n')[0]).toMatch(/^policies\.p\.allow\[0\]\.domain: .*needs the DNS gate/);
  });

  it('keeps the 0.2 shape when no policy is used', () => {
    const plain = parseConfig('allow:\n  - domain: a.example.com\n', 'x.yml');
    expect(plain.policies).toEqual([]);
    expect(plain.containers).toMatchObject({ default: 'host', assign: [], policyLabel: true });
    expect(policiesInUse(plain)).toBe(false);
    expect(policiesInUse(c)).toBe(true);
  });
});

describe('assignPolicy', () => {
  const c = parseConfig(CONFIG, 'p.yml');

  it('takes the first assign entry that matches, all its keys', () => {
    expect(assignPolicy(c, compose('shop', 'api-wrapper'))).toEqual({ policy: 'payments', by: 'containers.assign[0]' });
    expect(assignPolicy(c, compose('shop', 'web'))).toEqual({ policy: 'none', by: 'containers.default' });
    expect(assignPolicy(c, compose('other', 'api-wrapper'))).toEqual({ policy: 'none', by: 'containers.default' });
    expect(assignPolicy(c, { name: 'runner', labels: { 'com.example.role': 'ci' } })).toEqual({ policy: 'ci', by: 'containers.assign[1]' });
    expect(assignPolicy(c, { name: 'runner', labels: { 'com.example.role': 'cd' } }).policy).toBe('none');
    expect(assignPolicy(c, { name: '/scratch-7', labels: {} })).toEqual({ policy: 'none', by: 'containers.assign[2]' });
  });

  it('an unknown name gives nothing, never the default', () => {
    const host = parseConfig(CONFIG.replace('default: none', 'default: host'), 'p.yml');
    expect(assignPolicy(host, { name: 'x', labels: { team: 'a' } })).toEqual({ policy: 'none', by: 'containers.assign[3]', unknown: 'typo' });
    expect(assignPolicy(host, { name: 'x', labels: { 'egressfw.policy': 'stripe-and-more' } })).toEqual({ policy: 'none', by: 'label egressfw.policy', unknown: 'stripe-and-more' });
    expect(assignPolicy(host, { name: 'x', labels: {} })).toEqual({ policy: 'host', by: 'containers.default' });
  });

  it('the label selects only a defined policy, after the operator\'s assignments, and can be turned off', () => {
    expect(assignPolicy(c, { name: 'x', labels: { 'egressfw.policy': 'ci' } })).toEqual({ policy: 'ci', by: 'label egressfw.policy' });
    // the operator's assignment wins over the container's own label
    expect(assignPolicy(c, compose('shop', 'api-wrapper', { 'egressfw.policy': 'ci' })).policy).toBe('payments');
    const off = parseConfig(CONFIG.replace('containers:\n', 'containers:\n  policyLabel: false\n'), 'p.yml');
    expect(assignPolicy(off, { name: 'x', labels: { 'egressfw.policy': 'ci' } })).toEqual({ policy: 'none', by: 'containers.default' });
  });

  it('globs match whole names, literally except * and ?', () => {
    expect(globMatches('scratch-*', 'scratch-')).toBe(true);
    expect(globMatches('scratch-*', 'xscratch-1')).toBe(false);
    expect(globMatches('a.b?', 'a.bc')).toBe(true);
    expect(globMatches('a.b?', 'axbc')).toBe(false);
    expect(globMatches('(x)+', '(x)+')).toBe(true);
  });
});
