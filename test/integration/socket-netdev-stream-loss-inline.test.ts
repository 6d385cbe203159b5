// socket-netdev-stream-loss.test.ts with a datapath thread: its socket netdev ports run in-line
// in the switch's rounds (the default there) instead of threads of their own.
import '../fixtures/netdev-datapath-thread.js';
import './socket-netdev-stream-loss.test.js';
