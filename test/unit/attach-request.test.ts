/** The control protocol's attach request: the `inline` field (vale-ctl-ts -a --inline on|off). */
import test from 'ava';
import { decodeRequest, encodeMessage, PROTOCOL_VERSION, ProtocolError } from '../../src/control/protocol.js';

const raw = (o: Record<string, unknown>): Uint8Array => new TextEncoder().encode(JSON.stringify(o));

test("attach's 'inline' is a boolean, on attach only, and absent unless given", (t) => {
  const on = decodeRequest(encodeMessage({ v: PROTOCOL_VERSION, op: 'attach', name: 'vale0:eth1', inline: true }));
  t.like(on, { op: 'attach', name: 'vale0:eth1', inline: true });
  t.like(decodeRequest(encodeMessage({ v: PROTOCOL_VERSION, op: 'attach', name: 'vale0:eth1', inline: false })), { inline: false });
  t.false('inline' in decodeRequest(encodeMessage({ v: PROTOCOL_VERSION, op: 'attach', name: 'vale0:eth1' })));
  t.throws(() => decodeRequest(raw({ v: PROTOCOL_VERSION, op: 'attach', name: 'vale0:eth1', inline: 'on' })), { instanceOf: ProtocolError, message: /'inline' must be true or false/ });
  t.throws(() => decodeRequest(raw({ v: PROTOCOL_VERSION, op: 'detach', name: 'vale0:eth1', inline: true })), { instanceOf: ProtocolError, message: /on attach only/ });
});
