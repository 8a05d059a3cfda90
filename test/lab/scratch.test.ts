import { it } from 'vitest';
import { execSync } from 'node:child_process';
import { startLab } from './lab.js';
it('scratch', async () => {
  for (const o of [{}, { ipv6: false }, { docker: false }]) {
    const t0 = Date.now();
    const lab = await startLab(o);
    console.log(JSON.stringify(o), 'up', Date.now() - t0);
    if (lab.hasDocker) {
      const c = await lab.runContainer();
      console.log((await lab.host(['iptables', '-S', 'FORWARD'])).stdout, (await lab.host(['sysctl', 'net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding'])).stdout);
      console.log(await Promise.all(['http://allowed.test/', 'http://203.0.113.10/', 'http://[2001:db8:10::10]/'].map((u) => lab.fetch(u, { container: c }))));
    }
    console.log(await Promise.all(['http://allowed.test/', 'https://allowed.test/', 'http://[2001:db8:10::10]/'].map((u) => lab.fetch(u))));
    const t1 = Date.now();
    await lab.stop();
    console.log('down', Date.now() - t1);
  }
}, 120000);
