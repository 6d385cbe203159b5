import test from 'ava';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { native } from '../../src/netmap/addon.js';
import { requestShortSlice, SHORT_SLICE_US } from '../../src/netmap/sched.js';

/** This thread's EEVDF slice in ns, from /proc (undefined where the kernel does not show it: no EEVDF). */
function sliceNs(): number | undefined {
  const m = /^se\.slice\s*:\s*(\d+)/m.exec(readFileSync('/proc/thread-self/sched', 'utf8'));
  return m ? Number(m[1]) : undefined;
}

test.serial.after.always(() => {
  native.setSchedSlice(0); // back to the kernel's default for the rest of this process
});

test.serial('requestShortSlice asks for the short slice and keeps the thread nice value', (t) => {
  const nice0 = os.getPriority(0);
  let nice = nice0;
  // a nice value above 0 must survive (sched_setattr would otherwise reset it: a priority raise)
  try {
    os.setPriority(0, nice0 + 1);
    nice = nice0 + 1;
  } catch {
    // not allowed here: check the value we have
  }
  const got = requestShortSlice({});
  t.is(os.getPriority(0), nice);
  if (got === 0) {
    t.log('the kernel refused a slice request (not SCHED_OTHER?): nothing changed');
    return;
  }
  t.is(got, SHORT_SLICE_US);
  const s = sliceNs();
  if (s === undefined) t.log('no se.slice in /proc/thread-self/sched (kernel without EEVDF): request accepted, not visible');
  else t.is(s, SHORT_SLICE_US * 1000);
  t.is(requestShortSlice({ NETMAP_TS_SLICE_US: '250' }), 250);
  if (s !== undefined) t.is(sliceNs(), 250_000);
  t.is(os.getPriority(0), nice);
});

test.serial('NETMAP_TS_SLICE_US=0 leaves the thread alone; bad values are refused by name', (t) => {
  native.setSchedSlice(0);
  const before = sliceNs();
  t.is(requestShortSlice({ NETMAP_TS_SLICE_US: '0' }), 0);
  t.is(sliceNs(), before);
  for (const v of ['-1', '1.5', 'x', '100001']) t.throws(() => requestShortSlice({ NETMAP_TS_SLICE_US: v }), { instanceOf: RangeError, message: /NETMAP_TS_SLICE_US/ });
  t.throws(() => native.setSchedSlice(-1), { instanceOf: RangeError });
});
