/**
 * A client holds its port's two doorbells, eventfds whose open files it
 * shares with vale-ts, and with them their O_NONBLOCK flag. Before, a client
 * that cleared it stopped the whole switch: the switch emptied a bell in a
 * read loop whose last read then waited forever, and a kick into a bell
 * whose counter the client had filled waited forever too. Now reads never
 * wait, and a stuck kick is cut short by a watchdog tick, counted
 * (bellStuck), and that bell is not rung again until a new client attaches.
 */
import test from 'ava';
import os from 'node:os';
import path from 'node:path';
import { open, Switch, ValeClient, ValeServer, type Port } from '../../src/index.js';
import type { CsbView } from '../../src/backends/csb.js';
import { native } from '../../src/netmap/addon.js';
import { untilAnswer } from '../fixtures/wait.js';
import { EVENTFD_FULL, makeBlocking } from '../fixtures/hostile-fd.js';
import { receiveTags as receive, taggedBroadcast as frame } from '../fixtures/tagged-frames.js';

let uniq = 0;
const sockPath = (): string => path.join(os.tmpdir(), `hostile-bells-${process.pid}-${uniq++}.sock`);

/** `n` broadcasts from `from` (tags first..) arrive at `to`. */
async function forwards(from: Port, to: Port, first: number, n: number): Promise<number[]> {
  for (let i = 0; i < n; i++) {
    from.inject(frame(0x0a, first + i));
    from.txsync();
  }
  return receive(to, n);
}

interface Bells {
  switchBell: number;
  waitFd: number;
  csb: CsbView;
}
const until = async (cond: () => Promise<boolean>): Promise<void> => {
  await untilAnswer(cond, (yes) => yes);
};
const bellsOf = (p: Port): Bells => p.backendObject as unknown as Bells;

for (const datapath of ['loop', 'thread'] as const) {
  test(`a client that makes its switch bell blocking and rings it does not hold the switch (datapath ${datapath})`, async (t) => {
    t.timeout(60_000);
    const socket = sockPath();
    const srv = await ValeServer.listen({ socket, switchOptions: { datapath } });
    t.teardown(() => srv.close());
    const evil = await open('vale0:evil', { socket });
    const a = await open('vale0:a', { socket });
    const b = await open('vale0:b', { socket });
    t.teardown(() => [evil, a, b].forEach((p) => p.close()));
    // the switch wakes for the ring and empties the bell: before, its
    // read loop's second read waited for a count that never came
    await makeBlocking(bellsOf(evil).switchBell, { ring: true });
    t.deepEqual(await forwards(a, b, 1, 5), [1, 2, 3, 4, 5]);
    // the bell still works for the client that broke it
    evil.inject(frame(0x0e, 9));
    evil.txsync();
    t.deepEqual(await receive(b, 1), [9]);
  });

  test(`a client that makes its own bell blocking and fills it holds the switch one watchdog tick; bellStuck counts it, and a new client of the persistent port gets a working bell (datapath ${datapath})`, async (t) => {
    t.timeout(60_000);
    const socket = sockPath();
    const srv = await ValeServer.listen({ socket, switchOptions: { datapath } });
    t.teardown(() => srv.close());
    const vale = new ValeClient({ socket });
    await vale.create('vale0:evil');
    const evil = await open('vale0:evil', { socket });
    const a = await open('vale0:a', { socket });
    const b = await open('vale0:b', { socket });
    t.teardown(() => [evil, a, b].forEach((p) => p.close()));
    const counters = async (): Promise<Record<string, number>> => (await vale.stats('vale0'))[0]!.ports.find((p) => p.name === 'vale0:evil')!.counters;

    const eb = bellsOf(evil);
    await makeBlocking(eb.waitFd, { fill: EVENTFD_FULL });
    // evil asks for a kick when frames arrive: the switch's kick then waits
    eb.csb.setApplNeedKick(eb.csb.rxKey(0), true);
    t.deepEqual(await forwards(a, b, 1, 5), [1, 2, 3, 4, 5]);
    await until(async () => (await counters())['bellStuck'] === 1);
    // not rung again, however often evil asks
    eb.csb.setApplNeedKick(eb.csb.rxKey(0), true);
    t.deepEqual(await forwards(a, b, 6, 3), [6, 7, 8]);
    t.is((await counters())['bellStuck'], 1);

    // a new client of the same (persistent) port: its bell is mended and rung
    evil.close();
    await until(async () => (await vale.list()).some((p) => p.name === 'vale0:evil' && !p.attached));
    const honest = await open('vale0:evil', { socket });
    t.teardown(() => honest.close());
    const hb = bellsOf(honest);
    native.drain(hb.waitFd);
    const kicks0 = (await counters())['kicks'] ?? 0;
    hb.csb.setApplNeedKick(hb.csb.rxKey(0), true);
    t.deepEqual(await forwards(a, b, 20, 1), [20]);
    await until(async () => ((await counters())['kicks'] ?? 0) > kicks0);
    t.is(native.waitFd(hb.waitFd, 1, 0) & 1, 1, 'the kick reached the new client\'s bell');
  });
}
