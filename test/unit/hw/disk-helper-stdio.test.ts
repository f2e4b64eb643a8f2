import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import { hostPaths, HostPaths } from '../../../src/hw/host-paths';
import { CommandRunner } from '../../../src/hw/runner';
import { stdioMain, parseRequest, HelperReply } from '../../../src/hw/disk-helper';
import { requestHelper, socketPrivileged, unprivilegedHelper } from '../../../src/hw/helper-socket';
import { HwError } from '../../../src/hw/errors';
import { fakeRoot } from './fixtures';

const HELPER_JS = path.resolve(__dirname, '..', '..', '..', 'src', 'hw', 'disk-helper.js');

function recorder(result = { code: 0, stdout: 'md0 detail\n', stderr: '' }): CommandRunner & { calls: { command: string; args: string[] }[] } {
  const calls: { command: string; args: string[] }[] = [];
  return {
    calls,
    async run(command, args) {
      calls.push({ command, args: [...args] });
      return result;
    },
  };
}

/** A host with a system disk (sda), a data array md0 on sdb1+sdc1, and a blank disk sdd. */
function host(): HostPaths {
  const root = fakeRoot({
    'proc/mounts': '/dev/sda2 / ext4 ro 0 0\n/dev/md0 /srv/cairn/data ext4 rw 0 0\n',
    'proc/swaps': 'Filename\tType\tSize\tUsed\tPriority\n',
    'proc/mdstat': 'Personalities : [raid1]\nmd0 : active raid1 sdb1[0] sdc1[1]\n      1000 blocks super 1.2 [2/2] [UU]\n\nunused devices: <none>\n',
  });
  const dev = path.join(root, 'sys/devices/block');
  const cls = path.join(root, 'sys/class/block');
  fs.mkdirSync(cls, { recursive: true });
  for (const [disk, parts] of [['sda', ['sda1', 'sda2']], ['sdb', ['sdb1']], ['sdc', ['sdc1']], ['sdd', []]] as const) {
    fs.mkdirSync(path.join(dev, disk), { recursive: true });
    fs.symlinkSync(path.join(dev, disk), path.join(cls, disk));
    for (const p of parts) {
      fs.mkdirSync(path.join(dev, disk, p), { recursive: true });
      fs.writeFileSync(path.join(dev, disk, p, 'partition'), '1\n');
      fs.symlinkSync(path.join(dev, disk, p), path.join(cls, p));
    }
  }
  fs.mkdirSync(path.join(root, 'sys/devices/virtual/block/md0/slaves'), { recursive: true });
  fs.symlinkSync(path.join(root, 'sys/devices/virtual/block/md0'), path.join(cls, 'md0'));
  return hostPaths(root);
}

/** One stdio exchange over an in-memory pipe: what the helper replies to `input`. */
async function exchange(input: string | null, runner: CommandRunner, paths: HostPaths): Promise<{ reply: HelperReply; lines: string[] }> {
  const stdin = new PassThrough();
  const lines: string[] = [];
  const p = stdioMain(stdin, (l) => lines.push(l), { runner, paths });
  if (input === null) stdin.end();
  else stdin.end(input);
  return { reply: await p, lines };
}

describe('hw/disk helper over its socket (--stdio and the socket client)', () => {
  const paths = host();
  const dirs: string[] = [];
  const sockPath = (): string => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-helper-sock-'));
    dirs.push(d);
    return path.join(d, 'helper.sock');
  };
  after(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it('--stdio answers one request line with one reply line, as the command-line form would', async () => {
    const runner = recorder();
    const { reply, lines } = await exchange('["detail","/dev/md0"]\n', runner, paths);
    expect(reply).to.deep.equal({ code: 0, stdout: 'md0 detail\n', stderr: '' });
    expect(lines).to.deep.equal([`${JSON.stringify(reply)}\n`]);
    expect(runner.calls).to.deep.equal([{ command: '/usr/sbin/mdadm', args: ['--detail', '/dev/md0'] }]);
  });

  it('--stdio refuses with code 2 what the helper refuses, and malformed requests, without running anything', async () => {
    const runner = recorder();
    const sys = await exchange('["add","/dev/md0","/dev/sda1","--confirm=/dev/sda1"]\n', runner, paths);
    expect(sys.reply.code).to.equal(2);
    expect(sys.reply.stderr).to.match(/\[CAIRN_HW_REFUSED\]/);
    for (const bad of ['not json\n', '{"op":"detail"}\n', '[]\n', '["detail",5]\n', '["frobnicate","/dev/sda"]\n']) {
      const r = await exchange(bad, runner, paths);
      expect(r.reply.code, bad).to.equal(2);
      expect(r.lines, bad).to.have.length(1);
    }
    const empty = await exchange(null, runner, paths);
    expect(empty.reply.code).to.equal(2);
    expect(empty.reply.stderr).to.match(/closed before sending/);
    const long = await exchange(`["detail","${'x'.repeat(70 * 1024)}"]\n`, runner, paths);
    expect(long.reply.stderr).to.match(/longer than/);
    expect(runner.calls).to.deep.equal([]);
    expect(() => parseRequest('["a","b"]')).to.not.throw();
  });

  it('socketPrivileged runs an operation through a socket server speaking the --stdio protocol', async () => {
    const runner = recorder({ code: 0, stdout: 'mdadm: added /dev/sdd\n', stderr: '' });
    const p = sockPath();
    let connections = 0;
    // What systemd's Accept=yes does, in-process: each connection gets one stdio exchange.
    const server = net.createServer((conn) => {
      connections++;
      void stdioMain(conn, (line) => conn.end(line), { runner, paths });
    });
    await new Promise<void>((r) => server.listen(p, r));
    try {
      const client = socketPrivileged({ socketPath: p });
      const res = await client.run({ op: 'add', md: '/dev/md0', device: '/dev/sdd', confirm: '/dev/sdd' });
      expect(res).to.deep.equal({ code: 0, stdout: 'mdadm: added /dev/sdd\n', stderr: '' });
      expect(runner.calls).to.deep.equal([{ command: '/usr/sbin/mdadm', args: ['--manage', '/dev/md0', '--add', '/dev/sdd'] }]);
      // Refused by the helper: the reply says so, nothing runs.
      const refused = await client.run({ op: 'add', md: '/dev/md0', device: '/dev/sda1', confirm: '/dev/sda1' });
      expect(refused.code).to.equal(2);
      expect(refused.stderr).to.match(/CAIRN_HW_REFUSED/);
      // Unconfirmed: refused before it leaves the client.
      await client.run({ op: 'add', md: '/dev/md0', device: '/dev/sdd', confirm: 'yes' }).then(
        () => expect.fail('should refuse'),
        (e: unknown) => expect(e).to.be.instanceOf(HwError).with.property('code', 'CAIRN_HW_CONFIRM_REQUIRED'),
      );
      expect(connections).to.equal(2);
      expect(runner.calls).to.have.length(1);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('the client reports a missing socket, a silent helper and a garbled reply clearly', async () => {
    const missing = await requestHelper(sockPath(), ['detail', '/dev/md0']).catch((e: unknown) => e);
    expect(missing).to.be.instanceOf(HwError).with.property('code', 'CAIRN_HW_UNAVAILABLE');
    expect((missing as Error).message).to.match(/cairn-disk-helper\.socket/);
    for (const [behaviour, want] of [
      [(c: net.Socket) => c.end(), /closed the connection without a reply/],
      [(c: net.Socket) => c.end('<html>\n'), /not JSON/],
      [(c: net.Socket) => c.end('{"code":"0"}\n'), /lacks code/],
    ] as const) {
      const p = sockPath();
      const server = net.createServer((c) => c.once('data', () => behaviour(c)));
      await new Promise<void>((r) => server.listen(p, r));
      try {
        const err = await requestHelper(p, ['detail', '/dev/md0']).catch((e: unknown) => e);
        expect(err).to.be.instanceOf(HwError);
        expect((err as Error).message).to.match(want);
      } finally {
        await new Promise<void>((r) => server.close(() => r()));
      }
    }
    const p = sockPath();
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(p, r));
    try {
      const err = await requestHelper(p, ['detail', '/dev/md0'], 300).catch((e: unknown) => e);
      expect((err as Error).message).to.match(/did not answer within/);
    } finally {
      silent.close();
    }
  });

  it('the real disk-helper.js --stdio process, handed the accepted connection as stdin/stdout (as systemd does), replies and exits', async function () {
    this.timeout(30_000);
    const p = sockPath();
    const exits: (number | null)[] = [];
    const server = net.createServer((conn) => {
      const child = spawn(process.execPath, [HELPER_JS, '--stdio'], { stdio: [conn, conn, 'ignore'] });
      child.on('exit', (code) => exits.push(code));
      conn.destroy(); // the child holds its own copies of the connection, as an Accept=yes instance does
    });
    await new Promise<void>((r) => server.listen(p, r));
    try {
      // Refused by the grammar, so nothing privileged runs on this machine.
      const res = await requestHelper(p, ['frobnicate', '/dev/sda'], 20_000);
      expect(res.code).to.equal(2);
      expect(res.stderr).to.match(/cairn-disk-helper: .*frobnicate/);
      for (let i = 0; i < 100 && exits.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(exits).to.deep.equal([0]);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('an unprivileged cairnd uses the helper socket when it exists, and sudo otherwise', async () => {
    const p = sockPath();
    const seen: string[] = [];
    const server = net.createServer((conn) => {
      conn.once('data', (d) => {
        seen.push(d.toString().trim());
        conn.end(JSON.stringify({ code: 0, stdout: 'via socket\n', stderr: '' }) + '\n');
      });
    });
    await new Promise<void>((r) => server.listen(p, r));
    const saved = process.env.CAIRN_DISK_HELPER_SOCKET;
    try {
      process.env.CAIRN_DISK_HELPER_SOCKET = p;
      const rec = recorder();
      const r = await unprivilegedHelper(rec, HELPER_JS).run({ op: 'detail', md: '/dev/md0' });
      expect(r.stdout).to.equal('via socket\n');
      expect(JSON.parse(seen[0])).to.deep.equal(['detail', '/dev/md0']);
      expect(rec.calls).to.deep.equal([]);
      process.env.CAIRN_DISK_HELPER_SOCKET = p + '.absent';
      await unprivilegedHelper(rec, HELPER_JS).run({ op: 'detail', md: '/dev/md0' });
      expect(rec.calls[0].command).to.equal('/usr/bin/sudo');
      expect(rec.calls[0].args.slice(0, 1)).to.deep.equal(['-n']);
    } finally {
      if (saved === undefined) delete process.env.CAIRN_DISK_HELPER_SOCKET;
      else process.env.CAIRN_DISK_HELPER_SOCKET = saved;
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
