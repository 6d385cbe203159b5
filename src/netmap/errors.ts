/**
 * Errors a port raises when what serves it is gone.
 *
 * @module
 */

/**
 * The vale-ts switch serving this port went away (it exited, was killed, or
 * shut down): thrown by `txsync`/`rxsync` and `ring.sync()`, rejected by
 * `poll`/`flush`, thrown by `for await` over the port, and by a control
 * request whose connection the switch dropped. The port's rings can no
 * longer move frames; close it, or open with `{ reconnect: true }` to have
 * it re-created on a restarted switch.
 */
export class SwitchGoneError extends Error {
  /** Always `ESHUTDOWN`, for code that checks errors by their code. */
  readonly code = 'ESHUTDOWN';
  /** Frames this side had queued on its tx rings that the switch never took. */
  readonly lostTxFrames: number;
  constructor(message: string, lostTxFrames = 0) {
    super(message);
    this.name = 'SwitchGoneError';
    this.lostTxFrames = lostTxFrames;
  }
}
