// Docker 29's nftables firewall backend, reproduced: no Debian suite ships Docker 29 and its
// build did not fit the CI budget, so this loads the ruleset moby documents for a user network
// with a published port (integration/network/bridge/nftablesdoc/generated/usernet-portmap.md:
// tables ip docker-bridges, base chain filter-FORWARD at priority filter, no DOCKER-USER) with
// the lab's addresses, and wires container-like namespaces to its bridge the way Docker does.
// (nat-OUTPUT says "priority -100", as moby's earlier generated doc does: Debian 12's nft 1.0.6
// accepts the name "dstnat" only on prerouting; both are -100.)
import { afterAll, beforeAll, expect, it } from 'vitest';
import { snapshotMachineNetwork, startLab, type Lab } from './lab.js';
import { efw, writeConfig } from './efw.js';
import { labDescribe } from './requirements.js';

const SUBNET = '198.51.100.128/28';
const GW = '198.51.100.129';
const C1 = '198.51.100.130'; // "c1": the container with a published port (8080 -> 80)
const C2 = '198.51.100.131';

const RULESET = `
table ip docker-bridges {
	map filter-forward-in-jumps {
		type ifname : verdict
		elements = { "docker0" : jump filter-forward-in__docker0, "bridge1" : jump filter-forward-in__bridge1 }
	}
	map filter-forward-out-jumps {
		type ifname : verdict
		elements = { "docker0" : jump filter-forward-out__docker0, "bridge1" : jump filter-forward-out__bridge1 }
	}
	map nat-postrouting-in-jumps {
		type ifname : verdict
		elements = { "docker0" : jump nat-postrouting-in__docker0, "bridge1" : jump nat-postrouting-in__bridge1 }
	}
	map nat-postrouting-out-jumps {
		type ifname : verdict
		elements = { "docker0" : jump nat-postrouting-out__docker0, "bridge1" : jump nat-postrouting-out__bridge1 }
	}
	chain filter-FORWARD {
		type filter hook forward priority filter; policy accept;
		oifname vmap @filter-forward-in-jumps
		iifname vmap @filter-forward-out-jumps
	}
	chain nat-OUTPUT {
		type nat hook output priority -100; policy accept;
		ip daddr != 127.0.0.0/8 fib daddr type local counter jump nat-prerouting-and-output
	}
	chain nat-POSTROUTING {
		type nat hook postrouting priority srcnat; policy accept;
		iifname vmap @nat-postrouting-out-jumps
		oifname vmap @nat-postrouting-in-jumps
	}
	chain nat-PREROUTING {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local counter jump nat-prerouting-and-output
	}
	chain nat-prerouting-and-output {
		iifname != "bridge1" tcp dport 8080 counter dnat to ${C1}:80 comment "DNAT"
	}
	chain raw-PREROUTING {
		type filter hook prerouting priority raw; policy accept;
		ip daddr ${C1} iifname != "bridge1" counter drop comment "DROP DIRECT ACCESS"
	}
	chain filter-forward-in__docker0 {
		ct state established,related counter accept
		iifname "docker0" counter accept comment "ICC"
		counter drop comment "UNPUBLISHED PORT DROP"
	}
	chain filter-forward-out__docker0 {
		ct state established,related counter accept
		counter accept comment "OUTGOING"
	}
	chain nat-postrouting-in__docker0 {
	}
	chain nat-postrouting-out__docker0 {
		oifname != "docker0" ip saddr 172.17.0.0/16 counter masquerade comment "MASQUERADE"
	}
	chain filter-forward-in__bridge1 {
		ct state established,related counter accept
		iifname "bridge1" counter accept comment "ICC"
		ip daddr ${C1} tcp dport 80 counter accept
		counter drop comment "UNPUBLISHED PORT DROP"
	}
	chain filter-forward-out__bridge1 {
		ct state established,related counter accept
		counter accept comment "OUTGOING"
	}
	chain nat-postrouting-in__bridge1 {
	}
	chain nat-postrouting-out__bridge1 {
		oifname != "bridge1" ip saddr ${SUBNET} counter masquerade comment "MASQUERADE"
	}
}
`;

labDescribe("egressfw on Docker 29's nftables backend (moby's documented ruleset, reproduced)", {}, () => {
  let lab: Lab;
  let machineBefore: string;
  let config: string;
  const inNs = (ns: string, argv: string[]) => lab.host(['ip', 'netns', 'exec', ns, ...argv]);
  const get = (ns: string, url: string) => inNs(ns, ['timeout', '3', 'busybox', 'wget', '-q', '-O', '-', url]);
  /** c1 serves one HTTP request on :80 for a few seconds (bounded by timeout: nothing outlives the check) */
  const serveOnce = () => lab.host(['sh', '-c', `ip netns exec c1 timeout 4 busybox httpd -f -p 80 -h /tmp/c1www >/dev/null 2>&1 & sleep 0.3`]);

  beforeAll(async () => {
    machineBefore = await snapshotMachineNetwork();
    lab = await startLab({ docker: false, ipv6: false });
    const steps: string[][] = [
      ['sysctl', '-qw', 'net.ipv4.ip_forward=1'],
      ['ip', 'link', 'add', 'bridge1', 'type', 'bridge'],
      ['ip', 'addr', 'add', `${GW}/28`, 'dev', 'bridge1'],
      ['ip', 'link', 'set', 'bridge1', 'up'],
      ['mkdir', '-p', '/tmp/c1www'],
      ['sh', '-c', 'echo c1-ok > /tmp/c1www/index.html'],
    ];
    for (const [ns, addr, veth] of [['c1', C1, 'v-c1'], ['c2', C2, 'v-c2']] as const) {
      steps.push(
        ['ip', 'netns', 'add', ns],
        ['ip', 'link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns],
        ['ip', 'link', 'set', veth, 'master', 'bridge1', 'up'],
        ['ip', 'netns', 'exec', ns, 'ip', 'addr', 'add', `${addr}/28`, 'dev', 'eth0'],
        ['ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'eth0', 'up'],
        ['ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up'],
        ['ip', 'netns', 'exec', ns, 'ip', 'route', 'add', 'default', 'via', GW],
      );
    }
    for (const s of steps) {
      const r = await lab.host(s);
      expect(r.exitCode, `${s.join(' ')}: ${r.stderr}`).toBe(0);
    }
    const nft = await lab.host(['nft', '-f', '-'], { input: RULESET });
    expect(nft.exitCode, nft.stderr).toBe(0);
    config = writeConfig(
      lab,
      'egressfw.yml',
      `allow:\n  - domain: allowed.test\n    ports: [80]\ndns:\n  servers: [${lab.dnsServer}]\n  timeout: 1s\nhost: { enabled: false }\nipv6: false\n`,
    );
  });

  afterAll(async () => {
    await lab?.host(['sh', '-c', 'ip netns del c1; ip netns del c2']);
    await lab?.stop();
    expect(await snapshotMachineNetwork()).toBe(machineBefore);
  });

  it('before sync: the ruleset lets a container reach anything (the bypass exists)', async () => {
    const r = await get('c2', 'http://203.0.113.20/');
    expect(r.stdout, r.stderr).toMatch(/site=203\.0\.113\.20/);
  });

  it('sync enforces from its own table: blocked refused at once, allowed passes, container to container and the published port still work', async () => {
    const s = await efw(lab, ['sync', '--config', config, '--state-dir', `${lab.dir}/state`]);
    expect(s.exitCode, s.stderr).toBe(0);
    const [blocked, allowed, c2c] = await Promise.all([
      get('c2', 'http://203.0.113.20/'),
      get('c2', 'http://203.0.113.10/'),
      inNs('c2', ['busybox', 'ping', '-c', '1', '-W', '2', C1]),
    ]);
    expect(blocked.exitCode).not.toBe(0);
    expect(blocked.exitCode, 'refused, not timed out').not.toBe(124);
    expect(allowed.stdout, allowed.stderr).toMatch(/site=203\.0\.113\.10/);
    expect(c2c.exitCode, c2c.stdout + c2c.stderr).toBe(0);
    await serveOnce();
    const published = await lab.inet(['timeout', '3', 'busybox', 'wget', '-q', '-O', '-', 'http://198.51.100.2:8080/']);
    expect(published.stdout, published.stderr).toBe('c1-ok\n');
    // Docker's table is untouched; ours sits beside it.
    expect((await lab.host(['nft', 'list', 'tables'])).stdout).toMatch(/table ip docker-bridges[\s\S]*table inet egressfw|table inet egressfw[\s\S]*table ip docker-bridges/);
  });

  it('plan afterwards: nothing to change', async () => {
    const p = await efw(lab, ['plan', '--config', config, '--state-dir', `${lab.dir}/state`, '--detailed-exitcode']);
    expect(p.exitCode, p.stdout + p.stderr).toBe(0);
  });
});
