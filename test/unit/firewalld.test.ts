import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { PreconditionError } from '../../src/errors.js';
import { findFirewalld, firewalldError, realProcFs, type ProcFs } from '../../src/system/firewalld.js';

interface FakeProc {
  comm: string;
  argv: string[];
  state?: string;
  net?: string;
}

/** A /proc with the given processes; our own namespace is net:[1]. Records what was read. */
function fakeProc(procs: Record<number, FakeProc>): ProcFs & { reads: string[] } {
  const reads: string[] = [];
  return {
    reads,
    pids: async () => Object.keys(procs).map(Number),
    async read(file) {
      reads.push(file);
      const m = file.match(/^\/proc\/(\d+)\/(comm|cmdline|stat)$/);
      const p = m ? procs[Number(m[1])] : undefined;
      if (!p) return null;
      if (m![2] === 'comm') return `${p.comm}\n`;
      if (m![2] === 'cmdline') return p.argv.map((a) => `${a}\0`).join('');
      return `${m![1]} (${p.comm}) ${p.state ?? 'S'} 1 1 1 0 -1`;
    },
    async readlink(file) {
      if (file === '/proc/self/ns/net') return 'net:[1]';
      const m = file.match(/^\/proc\/(\d+)\/ns\/net$/);
      const p = m ? procs[Number(m[1])] : undefined;
      return p ? (p.net ?? 'net:[1]') : null;
    },
  };
}

const BASE: Record<number, FakeProc> = {
  1: { comm: 'systemd', argv: ['/sbin/init'] },
  200: { comm: 'dockerd', argv: ['/usr/sbin/dockerd', '-H', 'fd://'] },
  300: { comm: 'python3', argv: ['/usr/bin/python3', '/usr/bin/unattended-upgrade'] },
};

describe('firewalld detection from /proc', () => {
  it('none running: null, and cmdlines are read only for python-looking processes', async () => {
    const proc = fakeProc(BASE);
    expect(await findFirewalld(proc)).toBeNull();
    expect(proc.reads.filter((r) => r.endsWith('/cmdline'))).toEqual(['/proc/300/cmdline']);
  });

  it('started by systemd (shebang: comm is firewalld, argv runs python3 -s /usr/sbin/firewalld)', async () => {
    const argv = ['/usr/bin/python3', '-s', '/usr/sbin/firewalld', '--nofork', '--nopid'];
    expect(await findFirewalld(fakeProc({ ...BASE, 812: { comm: 'firewalld', argv } }))).toEqual({ pid: 812, argv });
  });

  it('run directly, or by an interpreter with the script as first argument', async () => {
    expect(await findFirewalld(fakeProc({ ...BASE, 9: { comm: 'firewalld', argv: ['/usr/sbin/firewalld', '--nofork'] } }))).toMatchObject({ pid: 9 });
    expect(await findFirewalld(fakeProc({ ...BASE, 9: { comm: 'python3.11', argv: ['python3.11', '/usr/sbin/firewalld'] } }))).toMatchObject({ pid: 9 });
  });

  it('not firewalld: the client, a service manager or an editor naming it, a config file', async () => {
    const proc = fakeProc({
      ...BASE,
      10: { comm: 'firewall-cmd', argv: ['/usr/bin/python3', '/usr/bin/firewall-cmd', '--state'] },
      11: { comm: 'systemctl', argv: ['systemctl', 'stop', 'firewalld'] },
      12: { comm: 'vim', argv: ['vim', '/etc/firewalld/firewalld.conf'] },
      13: { comm: 'python3', argv: ['python3', '-c', 'import firewall', 'firewalld'] },
    });
    expect(await findFirewalld(proc)).toBeNull();
  });

  it('a zombie firewalld, one in another network namespace (a container), one that exits mid-scan: not running', async () => {
    const argv = ['/usr/bin/python3', '-s', '/usr/sbin/firewalld', '--nofork'];
    const proc = fakeProc({
      ...BASE,
      20: { comm: 'firewalld', argv, state: 'Z' },
      21: { comm: 'firewalld', argv, net: 'net:[99]' },
    });
    const gone = { ...proc, pids: async () => [...(await proc.pids()), 22] }; // listed, then gone
    expect(await findFirewalld(gone)).toBeNull();
  });

  it('the blocker names firewalld, its pid and the fix, and says nothing changed', () => {
    const e = firewalldError({ pid: 812, argv: ['/usr/bin/python3', '-s', '/usr/sbin/firewalld', '--nofork'] });
    expect(e).toBeInstanceOf(PreconditionError);
    expect(e.message).toMatch(/^firewalld is running \(pid 812: \/usr\/bin\/python3 -s \/usr\/sbin\/firewalld --nofork\): egressfw does not support it yet/);
    expect(e.message).toMatch(/systemctl disable --now firewalld && systemctl mask firewalld.*Nothing was changed\.$/);
  });

  it('the real /proc: finds a live process whose argv[0] is firewalld, and no longer once it exited', async () => {
    // `sleep` started under the name firewalld (comm stays "sleep"): touches nothing, needs no root
    const child = spawn('sleep', ['30'], { argv0: '/usr/sbin/firewalld', stdio: 'ignore' });
    let onlyChild = (): ProcFs => realProcFs;
    try {
      await new Promise((r) => child.once('spawn', r));
      // Only our child (a real firewalld on the machine must not matter); its comm is "sleep", so
      // present it as the shebang case would be: every other read is the real /proc.
      onlyChild = () => ({ ...realProcFs, pids: async () => [child.pid!], read: async (f) => (f === `/proc/${child.pid}/comm` ? 'firewalld\n' : realProcFs.read(f)) });
      expect(await findFirewalld(onlyChild())).toMatchObject({ pid: child.pid, argv: ['/usr/sbin/firewalld', '30'] });
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
    expect(await findFirewalld(onlyChild())).toBeNull();
  });
});
