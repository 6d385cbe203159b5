/**
 * The co-resident shortcut's rendezvous (cpp/core/shortcut_peer.h): the
 * directory's checks, a listener and a connection, CLAIMs both ways with the
 * channel's memfd riding along (attached and used on the other side), and
 * what a hostile or foreign peer gets: refused messages, and no way in for
 * another uid.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync, statSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeRaw } from '../../src/netmap/addon.js';

interface Claim {
  instance: string;
  vni: number;
  family: number;
  mine: string;
  yours: string;
  nonce: string;
  bufSize: number;
}
interface Ring {
  push(b: Buffer): string;
  pop(): Buffer | null;
  dupFd(): number;
}
const n = nativeRaw as {
  ShortcutRing: new (a: { slots?: number; slotSize?: number } | number) => Ring;
  shortcutDirCheck(dir: string, create: boolean): void;
  shortcutListen(dir: string, id: string): number;
  shortcutConnect(dir: string, id: string): number;
  shortcutSweep(dir: string): number;
  shortcutAccept(fd: number): number;
  shortcutSendClaim(fd: number, c: Claim, fds?: number[]): void;
  shortcutRecvClaim(fd: number): Claim & { fds: number[] };
  shortcutCheckEventfd(fd: number): void;
  shortcutEventfd(): number;
};

const idA = 'a1'.repeat(16), idB = 'b2'.repeat(16);
const claimA: Claim = { instance: idA, vni: 45, family: 4, mine: '0a640001' + '0'.repeat(24), yours: '0a640003' + '0'.repeat(24), nonce: '5e'.repeat(16), bufSize: 2048 };

function tmpDir(t: { teardown(f: () => void): void }): string {
  const d = mkdtempSync(path.join(os.tmpdir(), `shortcut-${process.pid}-`)); // 0700, ours
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function connected(t: { teardown(f: () => void): void }, dir: string): { a: number; b: number; close(fd: number): void } {
  const l = n.shortcutListen(dir, idA);
  const b = n.shortcutConnect(dir, idA);
  const a = n.shortcutAccept(l);
  const open = new Set([l, a, b]);
  const close = (fd: number): void => {
    if (open.delete(fd)) closeSync(fd);
  };
  t.teardown(() => [...open].forEach(close));
  return { a, b, close };
}

test('the directory must be ours, a real directory and closed to group and others', (t) => {
  const d = tmpDir(t);
  t.notThrows(() => n.shortcutDirCheck(d, false));
  const made = path.join(d, 'made');
  n.shortcutDirCheck(made, true);
  t.is(statSync(made).mode & 0o777, 0o700);
  chmodSync(made, 0o750);
  t.throws(() => n.shortcutDirCheck(made, false), { message: /open to group or others.*chmod 0700/s, code: 'EPERM' });
  symlinkSync(d, path.join(d, 'link'));
  t.throws(() => n.shortcutDirCheck(path.join(d, 'link'), false), { message: /not a directory \(or is a symbolic link\)/ });
  t.throws(() => n.shortcutDirCheck(path.join(d, 'absent'), false), { code: 'ENOENT', message: /absent/ });
});

test('CLAIMs cross both ways; the channel memfd sent with one is attached and carries frames', (t) => {
  const { a, b } = connected(t, tmpDir(t));
  const ring = new n.ShortcutRing({ slots: 8, slotSize: 2048 });
  const rfd = ring.dupFd();
  n.shortcutSendClaim(a, claimA, [rfd]);
  closeSync(rfd);
  const got = n.shortcutRecvClaim(b);
  t.is(got.fds.length, 1);
  const { fds, ...claim } = got;
  t.deepEqual(claim, claimA);
  const peer = new n.ShortcutRing(fds[0]!);
  closeSync(fds[0]!);
  t.is(ring.push(Buffer.from('over shared memory')), 'ok');
  t.deepEqual(peer.pop(), Buffer.from('over shared memory'));
  const claimB = { ...claimA, instance: idB, mine: claimA.yours, yours: claimA.mine, nonce: '77'.repeat(16), bufSize: 9000 };
  n.shortcutSendClaim(b, claimB);
  const back = n.shortcutRecvClaim(a);
  t.deepEqual(back.fds, []);
  t.is(back.bufSize, 9000);
  t.is(back.instance, idB);
});

test('a peer\'s message of another size, family, buffer size or magic is refused; a peer gone says so', (t) => {
  const { a, b, close } = connected(t, tmpDir(t));
  writeSync(a, Buffer.alloc(10));
  t.throws(() => n.shortcutRecvClaim(b), { message: /CLAIM of 10 bytes, not 96/, code: 'EPROTO' });
  writeSync(a, Buffer.alloc(200));
  t.throws(() => n.shortcutRecvClaim(b), { message: /longer than a CLAIM/ });
  writeSync(a, Buffer.alloc(96));
  t.throws(() => n.shortcutRecvClaim(b), { message: /another magic, version or type/ });
  n.shortcutSendClaim(a, { ...claimA, family: 5 });
  t.throws(() => n.shortcutRecvClaim(b), { message: /address family 5/ });
  n.shortcutSendClaim(a, { ...claimA, bufSize: 10 });
  t.throws(() => n.shortcutRecvClaim(b), { message: /buffer size of 10/ });
  n.shortcutSendClaim(a, { ...claimA, vni: 1 << 24 });
  t.throws(() => n.shortcutRecvClaim(b), { message: /VNI 16777216 out of range/ });
  t.throws(() => n.shortcutRecvClaim(b), { code: 'EAGAIN' }); // nothing more: never blocks
  close(a);
  t.throws(() => n.shortcutRecvClaim(b), { message: /went away/, code: 'ECONNRESET' });
});

test('another uid cannot reach a socket in a 0700 directory, and is refused by SO_PEERCRED where it can', (t) => {
  if (process.getuid?.() !== 0) return t.pass('needs root to run a process as another uid');
  const d = tmpDir(t);
  const l = n.shortcutListen(d, idA);
  t.teardown(() => closeSync(l));
  const addonJs = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../src/netmap/addon.js');
  const as65534 = (): string =>
    execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--input-type=module', '-e',
      'const { nativeRaw } = await import(process.argv[1]); try { nativeRaw.shortcutConnect(process.argv[2], process.argv[3]); console.log("connected") } catch (e) { console.log(e.code) }',
      addonJs, d, idA], { encoding: 'utf8' }).trim();
  t.is(as65534(), 'EACCES');
  // a directory and socket open to others: the kernel lets it connect, the credentials check does not
  chmodSync(d, 0o755);
  chmodSync(path.join(d, `${idA}.sock`), 0o777);
  t.is(as65534(), 'connected');
  t.throws(() => n.shortcutAccept(l), { message: /runs as uid 65534/, code: 'EPERM' });
});

test('the sockets of dead instances are swept (their lock can be taken); a live listener\'s are kept', (t) => {
  const d = tmpDir(t);
  const live = n.shortcutListen(d, idA);
  t.teardown(() => closeSync(live));
  const dead = 'c3'.repeat(16);
  writeFileSync(path.join(d, `${dead}.lock`), '');
  writeFileSync(path.join(d, `${dead}.sock`), '');
  writeFileSync(path.join(d, 'unrelated.lock'), '');
  t.is(n.shortcutSweep(d), 1);
  t.false(existsSync(path.join(d, `${dead}.sock`)) || existsSync(path.join(d, `${dead}.lock`)));
  t.true(existsSync(path.join(d, `${idA}.sock`)) && existsSync(path.join(d, `${idA}.lock`)));
  t.true(existsSync(path.join(d, 'unrelated.lock')));
});

test('a CHANNEL\'s wakeup fds must be eventfds (made non-blocking); a file, a socket or a memfd is refused', (t) => {
  const dir = tmpDir(t);
  const e = n.shortcutEventfd();
  t.teardown(() => closeSync(e));
  n.shortcutCheckEventfd(e);
  // non-blocking now: reading an empty eventfd says EAGAIN instead of hanging the driver
  t.throws(() => readSync(e, Buffer.alloc(8)), { code: 'EAGAIN' });
  const f = openSync(path.join(dir, 'f'), 'w+');
  t.teardown(() => closeSync(f));
  t.throws(() => n.shortcutCheckEventfd(f), { message: /not an eventfd but \/.*\/f/ });
  const { a } = connected(t, dir);
  t.throws(() => n.shortcutCheckEventfd(a), { message: /not an eventfd but socket:/ });
  const ring = new n.ShortcutRing({ slots: 4, slotSize: 64 });
  const m = ring.dupFd();
  t.teardown(() => closeSync(m));
  t.throws(() => n.shortcutCheckEventfd(m), { message: /not an eventfd but \/memfd:/ });
});
