// The README's demo: a Docker host in a network namespace, ufw denying outgoing, containers that
// still reach everything (the bypass), then `egressfw sync` and the same checks again.
import { startLab, type Lab } from '../test/lab/lab.js';
import { efw, writeConfig } from '../test/lab/efw.js';

const say = (s = '') => process.stdout.write(`${s}\n`);

async function check(lab: Lab, label: string, url: string, container?: string): Promise<void> {
  const r = await lab.fetch(url, { timeoutSec: 3, ...(container ? { container } : {}) });
  const what = r.ok ? `reached: ${r.body.trim()}` : `BLOCKED (${(r.stderr.trim().split('\n').pop() ?? '').slice(0, 60) || `exit ${r.exitCode}`}, ${r.ms} ms)`;
  say(`  ${label.padEnd(42)} ${url.padEnd(28)} ${what}`);
}

async function checks(lab: Lab): Promise<void> {
  await check(lab, 'host', 'http://allowed.test/');
  await check(lab, 'host', 'http://blocked.test/');
  for (const c of ['app (default bridge)', 'worker (compose-style network)']) {
    const name = c.split(' ')[0]!;
    await check(lab, `container ${c}`, 'http://allowed.test/', name);
    await check(lab, `container ${c}`, 'http://blocked.test/', name);
    await check(lab, `container ${c}`, 'http://allowed.test:8080/', name);
  }
}

const lab = await startLab({ docker: true, ipv6: true });
try {
  say(`Lab ${lab.id}: a Docker host and a fake internet in network namespaces (nothing outside them is touched).`);
  await lab.host(['ufw', '--force', 'enable']);
  await lab.host(['ufw', 'default', 'deny', 'outgoing']);
  await lab.docker(['network', 'create', 'backend']);
  await lab.runContainer({ name: 'app' });
  await lab.runContainer({ name: 'worker', network: 'backend' });
  say('\n1. ufw says `default deny outgoing`. The host is blocked, but the containers are not:');
  await checks(lab);

  await lab.host(['ufw', 'default', 'allow', 'outgoing']);
  const config = writeConfig(lab, 'egressfw.yml', `allow:\n  - domain: allowed.test\n    ports: [80, 443]\ndns:\n  servers: [${lab.dnsServer}, "${lab.dnsServer6}"]\n`);
  say(`\n2. The allowlist (${config}):\n   allowed.test, ports 80 and 443. Everything else is blocked.\n\n   egressfw plan:`);
  const plan = await efw(lab, ['plan', '--config', config, '--state-dir', `${lab.dir}/state`]);
  say(plan.stdout.split('\n').slice(0, 12).map((l) => `   ${l}`).join('\n'));
  say('   ...');
  const sync = await efw(lab, ['sync', '--config', config, '--state-dir', `${lab.dir}/state`]);
  say(`\n3. egressfw sync (exit ${sync.exitCode}):\n${sync.stdout.trimEnd()}${sync.stderr ? `\n${sync.stderr}` : ''}`);
  say('\n4. The same checks again: allowed name and port only, blocked ones fail at once:');
  await checks(lab);
  const again = await efw(lab, ['sync', '--config', config, '--state-dir', `${lab.dir}/state`]);
  say(`\n5. A second sync: ${again.stdout.trim()}`);
} finally {
  await lab.stop();
  say('\nLab removed.');
}
