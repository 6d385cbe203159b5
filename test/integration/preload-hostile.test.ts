/**
 * The preload library against a misbehaving netmap program, or a co-holder
 * of its region that misbehaves (nm-hostile.cc): ring reinit from the
 * preload's own record, not from words the pipe's peer can write; a poll set
 * whose emulated fds another thread registers meanwhile; ring ids read as
 * netmap reads them; epoll sets of many emulated fds; fd numbers reused
 * after an epoll fd's close or a close_range; timeouts as the kernel reads them;
 * a close while another thread waits on the fd; a registered fd asked to
 * register a NIC; the library's own fds against a program that closes or
 * dup2()s onto fds it never opened; an epoll set holding an fd and its dup
 * (one doorbell) after the first leaves it; fork and vfork children: the
 * fork child holds none of the library's fds and shares none of its state
 * with the parent, a vfork child's close leaves the parent's registration;
 * exec ends the registrations.
 */
import test from 'ava';
import { nmHostile, preloadEnv, run, uname, withVale0 } from '../fixtures/preload/apps.js';

const PRE = { LD_PRELOAD: preloadEnv };

test.before(async () => {
  await nmHostile(); // built once, before the tests race to it
});

test('pipe: a bad head/cur is reinitialised from the end\'s own record, not the peer-written CSB words; poll says POLLERR', async (t) => {
  const r = await run(await nmHostile(), ['pipe-reinit', `vale0:${uname('ra')}{0`], PRE).done;
  t.is(r.code, 0, r.stdout + r.stderr);
  t.is(r.stdout, 'ok\n');
  // logged once, as netmap logs its ring reinit
  t.regex(r.stderr, /ring 0: head or cur out of range, ring put back as the last sync left it \(netmap's ring reinit\)/);
});

test('poll with an emulated fd and nfds past RLIMIT_NOFILE is EINVAL, as the kernel answers, not an abort', async (t) => {
  // under test/asan/run.sh ASan's own poll interceptor (preloaded) reads every entry
  // before the call reaches the shim: there, a real array one past the limit
  const how = (process.env['LD_PRELOAD'] ?? '').includes('asan') ? 'limit' : 'huge';
  const r = await run(await nmHostile(), ['poll-huge', `vale0:${uname('rh')}{0`, how], PRE).done;
  t.is(r.code, 0, `${r.signal ?? ''} ${r.stdout}${r.stderr}`);
  t.is(r.stdout, 'ok\n');
});

test('NR_REG_ONE_NIC: the whole 16-bit nr_ringid is the ring (4097 is EINVAL on 2 rings, not ring 1)', async (t) => {
  const r = await run(await nmHostile(), ['ringid', `vale0:${uname('rb')}{0`], PRE).done;
  t.is(r.code, 0, r.stdout + r.stderr);
  t.is(r.stdout, 'ok\n');
  t.regex(r.stderr, /ring 4097 does not exist/);
});

test.serial('NR_REG_ONE_NIC on a port with 3 tx / 1 rx rings: ring 2 binds tx ring 2 and rx ring 0, as netmap does; ring 3 is EINVAL', async (t) => {
  await withVale0(async (env) => {
    const r = await run(await nmHostile(), ['onenic-fallback', `vale0:${uname('ro')}`], { ...PRE, ...env }).done;
    t.is(r.code, 0, `${r.signal ?? ''} ${r.stdout}${r.stderr}`);
    t.is(r.stdout, 'ok\n');
  });
});

test.serial('poll: a set whose emulated fd another thread registers meanwhile (400 entries of it) stays within its arrays', async (t) => {
  await withVale0(async (env) => {
    const r = await run(await nmHostile(), ['poll-race', `vale0:${uname('rc')}{0`, `vale0:${uname('rd')}`], { ...PRE, ...env }).done;
    t.is(r.code, 0, `${r.signal ?? ''} ${r.stdout}${r.stderr}`);
    t.is(r.stdout, 'ok\n');
  });
});

test('epoll: 70 emulated fds in one set are all reported, and one event per call visits each in turn', async (t) => {
  const r = await run(await nmHostile(), ['epoll-many', `vale0:${uname('re')}`, '70'], PRE).done;
  t.is(r.code, 0, r.stdout + r.stderr);
  t.is(r.stdout, 'ok\n');
});

test('epoll: an epoll fd closed after the last emulated fd is forgotten; a new one with its number wakes for its own fds', async (t) => {
  const r = await run(await nmHostile(), ['epoll-reuse', `vale0:${uname('rf')}`], PRE).done;
  t.is(r.code, 0, r.stdout + r.stderr);
  t.is(r.stdout, 'ok\n');
});

test('close_range and closefrom of a registered fd: a pipe that reuses the number is the pipe, not the registration', async (t) => {
  const r = await run(await nmHostile(), ['close-range', `vale0:${uname('rg')}`], PRE).done;
  t.is(r.code, 0, r.stdout + r.stderr);
  t.is(r.stdout, 'ok\n');
});

test('ppoll/epoll_pwait2 with an emulated fd: an invalid timespec is EINVAL, one past int64 nanoseconds is forever', async (t) => {
  const r = await run(await nmHostile(), ['bad-timeout', `vale0:${uname('rh')}{0`], PRE).done;
  t.is(r.code, 0, r.stdout + r.stderr);
  t.is(r.stdout, 'ok\n');
});

for (const how of ['poll', 'epoll'] as const) {
  test(`${how}: a close of the registered fd while another thread sleeps on it frees nothing that sleep uses; the registration goes when it returns`, async (t) => {
    const r = await run(await nmHostile(), ['close-in-wait', `vale0:${uname(how === 'poll' ? 'ri' : 'rj')}{0`, how], PRE).done;
    t.is(r.code, 0, `${r.signal ?? ''} ${r.stdout}${r.stderr}`);
    t.is(r.stdout, 'ok\n');
  });
}

test('NIOCTXSYNC and poll in two threads while a third registers and closes the fd, 500 times: nothing freed under them (ASan: test/asan/run.sh)', async (t) => {
  const r = await run(await nmHostile(), ['sync-close', `vale0:${uname('rn')}`, '500'], PRE).done;
  t.is(r.code, 0, `${r.signal ?? ''} ${r.stdout}${r.stderr}`);
  t.is(r.stdout, 'ok\n');
});

test('a registered fd asked to register a NIC (eth0) is EBUSY, as on netmap, and its registration keeps working', async (t) => {
  const r = await run(await nmHostile(), ['pass-busy', `vale0:${uname('rm')}{0`], PRE).done;
  t.is(r.code, 0, `${r.signal ?? ''} ${r.stdout}${r.stderr}`);
  t.is(r.stdout, 'ok\n');
});

for (const how of ['loop', 'range'] as const) {
  test(`the library's own fds survive a program's ${how === 'loop' ? 'close loop' : 'close_range/closefrom'} around its netmap fds and dup2 onto them (EBADF); no kick lands in the program's files`, async (t) => {
    const r = await run(await nmHostile(), ['lib-fds', `vale0:${uname(how === 'loop' ? 'rk' : 'rl')}`, how], PRE).done;
    t.is(r.code, 0, `${r.signal ?? ''} ${r.stdout}${r.stderr}`);
    t.is(r.stdout, 'ok\n');
  });
}

for (const how of ['close', 'del'] as const) {
  test(`epoll: a set holding a registered fd and its dup still wakes for the dup after the first ${how === 'close' ? 'is closed' : 'is EPOLL_CTL_DEL\'d'} (one doorbell, watched once)`, async (t) => {
    const r = await run(await nmHostile(), ['epoll-dup', `vale0:${uname(how === 'close' ? 'rp' : 'rq')}`, how], PRE).done;
    t.is(r.code, 0, `${r.signal ?? ''} ${r.stdout}${r.stderr}`);
    t.is(r.stdout, 'ok\n');
  });
}

for (const how of ['closing', 'live'] as const) {
  test.serial(`fork: the child holds none of the library's fds; vale-ts drops the port once the parent lets go (${how === 'closing' ? 'a close still held by another thread\'s poll at fork' : 'a registration closed after fork'}), while the child lives`, async (t) => {
    await withVale0(async (env) => {
      const r = await run(await nmHostile(), ['fork-release', `vale0:${uname(how === 'closing' ? 'fa' : 'fb')}`, how], { ...PRE, ...env }).done;
      t.is(r.code, 0, `${r.signal ?? ''} ${r.stdout}${r.stderr}`);
      t.is(r.stdout, 'ok\n');
    });
  });
}

test('fork: a child closing its copy of an fd in the parent\'s epoll set leaves the parent\'s wait watching its doorbell', async (t) => {
  const r = await run(await nmHostile(), ['fork-epoll', `vale0:${uname('fc')}`], PRE).done;
  t.is(r.code, 0, `${r.signal ?? ''} ${r.stdout}${r.stderr}`);
  t.is(r.stdout, 'ok\n');
});

test.serial('fork: parent and child registering rings of one port each keep their own netmap_if (no shared overlay slot)', async (t) => {
  await withVale0(async (env) => {
    const r = await run(await nmHostile(), ['fork-overlay', `vale0:${uname('fd')}`], { ...PRE, ...env }).done;
    t.is(r.code, 0, `${r.signal ?? ''} ${r.stdout}${r.stderr}`);
    t.is(r.stdout, 'ok\n');
  });
});

test('fork: poll, epoll_wait and select on an fd the child inherited registered say POLLERR at once (netmap_poll without a registration), not sleep', async (t) => {
  const r = await run(await nmHostile(), ['fork-poll', `vale0:${uname('fg')}{0`], PRE).done;
  t.is(r.code, 0, `${r.signal ?? ''} ${r.stdout}${r.stderr}`);
  t.is(r.stdout, 'ok\n');
});

test.serial('exec: a registration ends with the program image (vale-ts drops the port); the fd kept without O_CLOEXEC is a plain fd (ENOTTY)', async (t) => {
  await withVale0(async (env) => {
    const r = await run(await nmHostile(), ['exec', `vale0:${uname('fh')}`], { ...PRE, ...env }).done;
    t.is(r.code, 0, `${r.signal ?? ''} ${r.stdout}${r.stderr}`);
    t.is(r.stdout, 'ok\n');
  });
});

for (const how of ['close', 'closefrom'] as const) {
  test(`vfork: a child's ${how} of the registered fd before _exit leaves the parent's registration (shared memory, the parent's state)`, async (t) => {
    const r = await run(await nmHostile(), ['vfork-close', `vale0:${uname(how === 'close' ? 'fe' : 'ff')}{0`, how], PRE).done;
    t.is(r.code, 0, `${r.signal ?? ''} ${r.stdout}${r.stderr}`);
    t.is(r.stdout, 'ok\n');
  });
}
