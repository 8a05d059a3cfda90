// `egressfw proxy` with real containers: the generated compose override run by Debian's
// docker-compose 1.29 against the lab's dockerd, the lab's nginx image, and `egressfw sync`
// enforcing the same allowlist for the proxies' own traffic (containers only, no ufw).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labDescribe } from './requirements.js';
import { efw } from './efw.js';
import { snapshotMachineNetwork, startLab, type Lab } from './lab.js';
import { PROXY_ADDR, Project, egressfwConfig, pinnedNginx, writeProject } from './proxy-lab.js';

const isRoot = process.getuid?.() === 0;

const ALLOWED = /site=203\.0\.113\.10 port=(80|443) name=allowed\.test/;

labDescribe('egressfw proxy (real containers, docker-compose 1.29)', { docker: true, compose: true }, () => {
  let lab: Lab;
  let machineBefore: string;
  let project: Project;
  let image: string;
  const configs: Record<'per-domain' | 'sni', string> = { 'per-domain': '', sni: '' };
  const sync = (config: string) => efw(lab, ['sync', '--config', config, '--state-dir', `${lab.dir}/state`, '--quiet']);

  beforeAll(async () => {
    machineBefore = await snapshotMachineNetwork();
    lab = await startLab({ docker: true, ipv6: true });
    image = await pinnedNginx(lab);
    project = new Project(lab, writeProject(lab, image));
    configs['per-domain'] = egressfwConfig(lab, 'per-domain', image);
    configs.sni = egressfwConfig(lab, 'sni', image);
    // a wildcard name the allowlist has no IP for: only the sni proxy may reach it
    await lab.setRecords('www.wild.test', { A: ['203.0.113.30'] });
    await lab.setRecords('deep.down.wild.test', { A: ['203.0.113.30'] });
  });

  afterAll(async () => {
    await lab?.stop();
    if (isRoot) expect(await snapshotMachineNetwork()).toBe(machineBefore);
  });

  /** generate, sync the firewall, bring the project up */
  async function up(mode: 'per-domain' | 'sni'): Promise<void> {
    const gen = await project.proxyCmd(configs[mode]);
    expect(gen.exitCode, gen.stderr + gen.stdout).toBe(0);
    const s = await sync(configs[mode]);
    expect(s.exitCode, s.stderr + s.stdout).toBe(0);
    const u = await project.compose(['up', '-d']);
    expect(u.exitCode, u.stderr + u.stdout).toBe(0);
  }

  async function down(): Promise<void> {
    const d = await project.compose(['down', '--timeout', '1']);
    expect(d.exitCode, d.stderr).toBe(0);
  }

  for (const mode of ['per-domain', 'sni'] as const) {
    describe(mode, () => {
      beforeAll(async () => up(mode));
      afterAll(async () => down());

      it('allowed domain by name over HTTP and HTTPS (certificate verified), peer reachable; blocked by name, by IP, by forged SNI/Host', async () => {
        const [http, https, verified, peer, byName, byIp, byIp6, forgedHost, forgedSni] = await Promise.all([
          project.wget('http://allowed.test/'),
          project.wget('https://allowed.test/'),
          project.tls('allowed.test', 'allowed.test', { verifyName: 'allowed.test' }),
          project.wget('http://db:8080/'),
          project.wget('http://blocked.test/', { timeoutSec: 2 }),
          project.wget('http://203.0.113.20/', { timeoutSec: 2 }),
          project.wget('http://[2001:db8:20::20]/', { timeoutSec: 2 }),
          project.wget('http://allowed.test/', { header: 'Host: blocked.test', timeoutSec: 2 }),
          project.tls('allowed.test', 'blocked.test', { timeoutSec: 2 }),
        ]);
        expect(http.stdout, http.stderr).toMatch(ALLOWED);
        expect(http.stdout).toMatch(/port=80 /);
        expect(https.stdout, https.stderr).toMatch(/site=203\.0\.113\.10 port=443 name=allowed\.test/);
        expect(verified.ok, verified.stderr).toBe(true);
        expect(verified.stderr).toMatch(/verify return:1/);
        expect(verified.stdout).toMatch(/port=443 name=allowed\.test/);
        expect(peer.stdout, peer.stderr).toBe('peer-ok\n');
        expect(byName.ok, byName.stdout).toBe(false);
        expect(byIp.ok, byIp.stdout).toBe(false);
        expect(byIp6.ok, byIp6.stdout).toBe(false);
        // A forged name never reaches blocked.test: per-domain forwards to allowed.test only, sni refuses the name.
        expect(forgedHost.stdout).not.toMatch(/blocked/);
        expect(forgedSni.stdout).not.toMatch(/blocked/);
        if (mode === 'per-domain') {
          expect(forgedHost.stdout).toMatch(ALLOWED);
          expect(forgedSni.stdout).toMatch(/site=203\.0\.113\.10 port=443/);
        } else {
          expect(forgedHost.ok).toBe(false);
          expect(forgedHost.stderr).toMatch(/403/);
          expect(forgedSni.ok).toBe(false);
        }
      });

      it('protected services are on the internal network only; proxies run as nobody with no capabilities, read-only, healthy', async () => {
        const svc = mode === 'sni' ? 'egressfw-sni' : 'egressfw-allowed.test';
        const nets = (c: string) => lab.docker(['inspect', '-f', '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}', project.container(c)]);
        const [client, tlsclient, db, proxy, internal, id, caps, ro, health] = await Promise.all([
          nets('client'),
          nets('tlsclient'),
          nets('db'),
          nets(svc),
          lab.docker(['network', 'inspect', '-f', '{{.Internal}}', 'efwp_egressfw-internal']),
          project.exec(svc, ['id', '-u']),
          project.exec(svc, ['grep', '^CapEff', '/proc/1/status']),
          project.exec(svc, ['sh', '-c', 'touch /etc/x 2>&1; echo rc=$?']),
          lab.docker(['inspect', '-f', '{{.State.Health.Status}}', project.container(svc)]),
        ]);
        expect(client.stdout.trim()).toBe('efwp_egressfw-internal');
        expect(tlsclient.stdout.trim()).toBe('efwp_egressfw-internal');
        expect(db.stdout.trim()).toBe('efwp_default efwp_egressfw-internal');
        expect(proxy.stdout.trim()).toBe('efwp_egressfw-egress efwp_egressfw-internal');
        expect(internal.stdout.trim()).toBe('true');
        expect(id.stdout.trim()).toBe('65534');
        expect(caps.stdout).toMatch(/CapEff:\s+0+\n/);
        expect(ro.stdout).toMatch(/Read-only file system/);
        expect(health.stdout.trim()).toBe('healthy');
      });

      if (mode === 'sni') {
        it('a wildcard entry works over HTTPS and HTTP; other names are refused; only the proxy may reach wildcard IPs', async () => {
          const [https, http, deep, verifiedChain, sibling, fwRule] = await Promise.all([
            project.wget('https://www.wild.test/'),
            project.wget('http://www.wild.test/'),
            project.wget('http://deep.down.wild.test/'),
            // the lab certificate has no wild.test names: verify the chain only
            project.tls(PROXY_ADDR, 'www.wild.test'),
            project.tls(PROXY_ADDR, 'other.test', { timeoutSec: 2 }),
            lab.host(['nft', 'list', 'chain', 'inet', 'egressfw', 'forward']),
          ]);
          const logs = (await lab.docker(['logs', '--tail', '30', project.container('egressfw-sni')])).stdout;
          expect(https.stdout, https.stderr + logs).toMatch(/site=203\.0\.113\.30 port=443/);
          expect(http.stdout, http.stderr).toMatch(/site=203\.0\.113\.30 port=80/);
          expect(deep.stdout, deep.stderr).toMatch(/site=203\.0\.113\.30 port=80/);
          expect(verifiedChain.ok, verifiedChain.stderr).toBe(true);
          expect(sibling.ok).toBe(false);
          expect(fwRule.stdout).toMatch(/iifname "br-egressfw" ip daddr != \{ 0\.0\.0\.0\/8, 10\.0\.0\.0\/8, .* \} tcp dport \{ 80, 443 \} meta mark set meta mark \| 0x10000000 accept/);
          // nothing left to change after sync
          const plan = await efw(lab, ['plan', '--config', configs.sni, '--state-dir', `${lab.dir}/state`, '--detailed-exitcode']);
          expect(plan.exitCode, plan.stdout).toBe(0);
          // an ordinary container (default bridge) cannot reach that IP: the rule is the proxy bridge's only
          const c = await lab.runContainer();
          const direct = await lab.fetch('http://203.0.113.30/', { container: c, timeoutSec: 2 });
          expect(direct.ok).toBe(false);
        });
      }

      it("follows the domain's IP change in DNS", async () => {
        await lab.setRecords('allowed.test', { A: ['203.0.113.11'] });
        try {
          const s = await sync(configs[mode]);
          expect(s.exitCode, s.stderr).toBe(0);
          // nginx reuses an answer for dns.minTtl (1 s here)
          let body = '';
          for (let i = 0; i < 20 && !/site=203\.0\.113\.11/.test(body); i++) {
            await new Promise((r) => setTimeout(r, 500));
            body = (await project.wget('http://allowed.test/')).stdout;
          }
          expect(body).toMatch(/site=203\.0\.113\.11 port=80/);
          expect((await project.wget('https://allowed.test/')).stdout).toMatch(/site=203\.0\.113\.11 port=443/);
        } finally {
          await lab.setRecords('allowed.test', { A: ['203.0.113.10'], AAAA: ['2001:db8:10::10'] });
          await sync(configs[mode]);
        }
      });

      it('protected containers have no route out when the proxies are stopped', async () => {
        const proxies = mode === 'sni' ? ['egressfw-sni'] : ['egressfw-allowed.test'];
        const st = await project.compose(['stop', '--timeout', '1', ...proxies]);
        expect(st.exitCode, st.stderr).toBe(0);
        const checks = await Promise.all([
          project.wget('http://allowed.test/', { timeoutSec: 2 }),
          project.wget('https://allowed.test/', { timeoutSec: 2 }),
          project.wget('http://203.0.113.10/', { timeoutSec: 2 }),
          project.tls('allowed.test', 'allowed.test', { timeoutSec: 2 }),
        ]);
        for (const r of checks) expect(r.ok, r.stdout).toBe(false);
        expect((await project.wget('http://db:8080/')).stdout).toBe('peer-ok\n');
      });
    });
  }
});
