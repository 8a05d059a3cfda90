// Docker 29's nftables firewall backend, reproduced: no Debian suite ships Docker 29 and its
// build did not fit the CI budget, so this loads the ruleset moby documents for a user network
// with a published port (integration/network/bridge/nftablesdoc/generated/usernet-portmap.md:
// tables ip docker-bridges, base chain filter-FORWARD at priority filter, no DOCKER-USER) with
// the lab's addresses, and wires container-like namespaces to its bridge the way Docker does.
// (nat-OUTPUT says "priority -100", as moby's earlier generated doc does: Debian 12's nft 1.0.6
// accepts the name "dstnat" only on prerouting; both are -100.)
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { snapshotMachineNetwork, startLab, type Lab } from './lab.js';
import { CLI, canonical, efw, kernelState, orderInsensitive, within, writeConfig } from './efw.js';
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

/** The Docker host: bridge1 with two container namespaces, wired as Docker wires them, and Docker's documented ruleset. */
async function dockerHost(lab: Lab): Promise<void> {
  const steps: string[][] = [
    // Docker 29's nftables backend refuses to start without it: the operator sets it
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
}

/** Checks from the container namespaces and from the internet, each bounded (a blocked one waits out 3 s). */
function probes(lab: Lab) {
  const inNs = (ns: string, argv: string[]) => lab.host(['ip', 'netns', 'exec', ns, ...argv]);
  return {
    inNs,
    get: (ns: string, url: string) => inNs(ns, ['timeout', '3', 'busybox', 'wget', '-q', '-O', '-', url]),
    /** c1 serves one HTTP request on :80 for a few seconds (bounded by timeout: nothing outlives the check) */
    serveOnce: () => lab.host(['sh', '-c', `ip netns exec c1 timeout 4 busybox httpd -f -p 80 -h /tmp/c1www >/dev/null 2>&1 & sleep 0.3`]),
    published: () => lab.inet(['timeout', '3', 'busybox', 'wget', '-q', '-O', '-', 'http://198.51.100.2:8080/']),
    c2c: () => inNs('c2', ['busybox', 'ping', '-c', '1', '-W', '2', C1]),
  };
}

labDescribe("egressfw on Docker 29's nftables backend (moby's documented ruleset, reproduced)", {}, () => {
  let lab: Lab;
  let machineBefore: string;
  let config: string;
  const get = (ns: string, url: string) => probes(lab).get(ns, url);
  const inNs = (ns: string, argv: string[]) => probes(lab).inNs(ns, argv);
  const serveOnce = () => probes(lab).serveOnce();

  beforeAll(async () => {
    machineBefore = await snapshotMachineNetwork();
    lab = await startLab({ docker: false, ipv6: false });
    await dockerHost(lab);
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

// The same host with ufw active, as the operators in our problem statement run it: ufw's real iptables rules
// (FORWARD policy DROP) sit behind Docker's and egressfw's nftables tables. An accept in a base chain is not
// final, so before egressfw nothing passes; after sync what egressfw allows passes ufw's DROP by its mark.
labDescribe("egressfw on Docker 29's nftables backend with ufw active (reproduced)", {}, () => {
  let lab: Lab;
  let machineBefore: string;
  let config: string;
  let before: string;
  const state = () => `${lab.dir}/state`;
  /** the kernel as uninstall must leave it: iptables, ipsets, egressfw's and Docker's nft tables (no counters), ufw's files */
  const kernel = async () => {
    const [k, ruleset, files] = await Promise.all([
      kernelState(lab),
      // Docker's own table (ufw's iptables-nft tables are in kernelState; a ufw reload re-creates their chains in a new order)
      lab.host(['sh', '-c', 'nft list tables; nft -s list table ip docker-bridges']),
      lab.host(['sh', '-c', 'cd /etc && sha256sum ufw/* default/ufw | sort -k2']),
    ]);
    return [orderInsensitive(canonical(k)), ruleset.stdout, files.stdout].join('\n');
  };

  beforeAll(async () => {
    machineBefore = await snapshotMachineNetwork();
    lab = await startLab({ docker: false, ipv6: false });
    await dockerHost(lab);
    const ufw = await lab.host(['ufw', '--force', 'enable']);
    expect(ufw.exitCode, ufw.stderr).toBe(0);
    // ufw's steady state: its first enable in a namespace without IPv6 leaves ufw6-user-limit empty, a reload fills it
    expect((await lab.host(['ufw', 'reload'])).exitCode).toBe(0);
    config = writeConfig(
      lab,
      'egressfw.yml',
      `allow:\n  - domain: allowed.test\n    ports: [80]\ndns:\n  servers: [${lab.dnsServer}]\n  timeout: 1s\nipv6: false\n`,
    );
    before = await kernel();
  });

  let daemon: ChildProcess | undefined;
  const logs: string[] = [];

  afterAll(async () => {
    if (daemon) {
      const exited = new Promise((r) => daemon!.once('exit', r));
      daemon.kill('SIGTERM');
      await exited;
    }
    await lab?.host(['sh', '-c', 'ip netns del c1; ip netns del c2']);
    await lab?.stop();
    expect(await snapshotMachineNetwork()).toBe(machineBefore);
  });

  it("before sync: ufw's forward DROP stops everything, the allowed site and the published port too", async () => {
    const p = probes(lab);
    expect((await lab.host(['iptables', '-S', 'FORWARD'])).stdout).toMatch(/^-P FORWARD DROP$/m);
    await p.serveOnce();
    const [allowed, blocked, published] = await Promise.all([p.get('c2', 'http://203.0.113.10/'), p.get('c2', 'http://203.0.113.20/'), p.published()]);
    for (const r of [allowed, blocked, published]) expect(r.exitCode, r.stdout).not.toBe(0);
    // plan names the path sync will use
    const plan = await efw(lab, ['plan', '--config', config, '--state-dir', state()]);
    expect(plan.stdout).toContain("allowed traffic passes ufw's forward DROP by mark 0x10000000");
  });

  it("after sync: the allowlist passes ufw's DROP, the rest is refused at once; published port and container to container work", async () => {
    const p = probes(lab);
    const s = await efw(lab, ['sync', '--config', config, '--state-dir', state()]);
    expect(s.exitCode, s.stderr).toBe(0);
    await p.serveOnce();
    const [allowed, blocked, published, c2c] = await Promise.all([p.get('c2', 'http://203.0.113.10/'), p.get('c2', 'http://203.0.113.20/'), p.published(), p.c2c()]);
    expect(allowed.stdout, allowed.stderr).toMatch(/site=203\.0\.113\.10/);
    expect(blocked.exitCode).not.toBe(0);
    expect(blocked.exitCode, 'refused, not timed out').not.toBe(124);
    expect(published.stdout, published.stderr).toBe('c1-ok\n');
    expect(c2c.exitCode, c2c.stdout + c2c.stderr).toBe(0);
    // what let it through: our mark, accepted in ufw's forward path by egressfw's block
    const counted = (await lab.host(['iptables-save', '-c', '-t', 'filter'])).stdout;
    expect(counted).toMatch(/^\[[1-9]\d*:\d+\] -A ufw-before-forward -m mark --mark 0x10000000\/0x10000000 -m comment --comment "egressfw forward" -j ACCEPT$/m);
    const status = await efw(lab, ['status', '--config', config, '--state-dir', state()]);
    expect(status.stdout).toContain("allowed traffic passes ufw's forward DROP by mark 0x10000000");
  });

  it('a second plan is empty', async () => {
    const p = await efw(lab, ['plan', '--config', config, '--state-dir', state(), '--detailed-exitcode']);
    expect(p.exitCode, p.stdout + p.stderr).toBe(0);
  });

  it("uninstall restores the kernel exactly (iptables, ipsets, the nft tables, Docker's ruleset, ufw files); nothing passes again", async () => {
    const u = await efw(lab, ['uninstall', '--config', config, '--state-dir', state()]);
    expect(u.exitCode, u.stderr).toBe(0);
    expect(await kernel()).toBe(before);
    const r = await probes(lab).get('c2', 'http://203.0.113.10/');
    expect(r.exitCode).not.toBe(0);
  });

  it("a ruleset flush (Debian's nftables.service): the daemon has egressfw's table back within 1 s, not at the next drift check (30 s)", async () => {
    const argv = lab.hostArgv([process.execPath, CLI, 'daemon', '--config', config, '--state-dir', state()]);
    daemon = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    for (const s of [daemon.stdout!, daemon.stderr!]) s.on('data', (d: Buffer) => logs.push(...d.toString().trim().split('\n')));
    await within(20_000, 'first refresh applied', async () => logs.some((l) => / refresh changes=\d+/.test(l)));
    await new Promise((r) => setTimeout(r, 500)); // the monitor is up (it starts before the first refresh)
    const flush = await lab.host(['nft', 'flush', 'ruleset']);
    expect(flush.exitCode, flush.stderr).toBe(0);
    const t0 = Date.now();
    let ms = -1;
    while (Date.now() - t0 < 5_000) {
      if ((await lab.host(['nft', 'list', 'table', 'inet', 'egressfw'])).exitCode === 0) {
        ms = Date.now() - t0;
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    console.log(`ruleset flush: egressfw's table back after ${ms} ms; daemon: ${logs.filter((l) => /table-deleted|drift-repaired|error/.test(l)).join(' | ').slice(0, 3000)}`);
    expect(ms, 'table never came back').toBeGreaterThanOrEqual(0);
    expect(ms).toBeLessThan(1000);
    expect(logs.some((l) => / table-deleted /.test(l))).toBe(true);
    // ufw's rules were in the deleted iptables-nft tables (the host was open): the same repair reloaded ufw
    const ufwBack = await within(5_000, "ufw's rules back", async () => /^-P FORWARD DROP$/m.test((await lab.host(['iptables', '-S', 'FORWARD'])).stdout) && (await lab.host(['iptables', '-S', 'ufw-before-output'])).stdout.includes('EGRESSFW-HOST'));
    console.log(`ruleset flush: ufw's rules (and egressfw's hook) back after ${ms + ufwBack} ms at most`);
    // enforcing again: a blocked destination is refused at once, by our table (Docker's tables are gone with
    // the flush and come back when dockerd restarts)
    const blocked = await probes(lab).get('c2', 'http://203.0.113.20/');
    expect(blocked.exitCode).not.toBe(0);
    expect(blocked.exitCode, 'refused, not timed out').not.toBe(124);
  });
});
